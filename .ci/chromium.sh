#!/usr/bin/env bash
# Headless Chromium (Debian) for the Prefect UI test. Idempotent.
set -euo pipefail
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
chromium --version
