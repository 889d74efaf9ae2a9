#!/usr/bin/env bash
# Stop the single-node SLURM started by .ci/slurm.sh (by pid files).
for f in /run/slurmd.pid /run/slurmctld.pid; do [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
