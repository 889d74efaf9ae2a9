#!/usr/bin/env bash
# Start a local PostgreSQL (Debian package) with a `matloop` role and database for the store tests.
# Prints the SQLAlchemy URL to use. Idempotent.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -n | tail -1)
if [ -z "$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main"')" ]; then
  pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start >/dev/null 2>&1 || true
for _ in $(seq 30); do su postgres -c "pg_isready -q" && break; sleep 1; done
# a password unlike any other word of the output, so the tests can check that it is never printed or stored
password="pg-S3cret-7c1f"
su postgres -c "psql -tAc \"select 1 from pg_roles where rolname='matloop'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"create role matloop login\""
# CREATEDB: each pytest worker gets a database of its own (matloop_test_gw0, ...: tests/conftest.py)
su postgres -c "psql -qc \"alter role matloop createdb password '$password'\""
su postgres -c "psql -tAc \"select 1 from pg_database where datname='matloop_test'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"create database matloop_test owner matloop\""
echo "postgresql+psycopg://matloop:$password@127.0.0.1:5432/matloop_test"
