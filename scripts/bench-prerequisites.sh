#!/usr/bin/env bash
# What the benchmarks drive load with and that comes from Debian: wrk (JSON load in bench/run.py,
# scaling.py and cost.py). Installed when missing, as scripts/test-prerequisites.sh installs the tests'.
set -euo pipefail
if ! command -v wrk >/dev/null 2>&1; then
  echo "installing benchmark prerequisites from Debian: wrk" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
