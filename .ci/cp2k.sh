#!/usr/bin/env bash
# CP2K 2023.1 and its basis/pseudopotential data from Debian (the DFT tests run it for real). Idempotent.
set -euo pipefail
if ! command -v cp2k.psmp >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cp2k cp2k-data >/dev/null
fi
cp2k.psmp --version | awk "NR==1"
