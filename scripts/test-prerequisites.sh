#!/usr/bin/env bash
# Servers the tests start themselves but that come from Debian: PostgreSQL (throwaway clusters).
set -euo pipefail
need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test prerequisites from Debian: ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The package starts a cluster of its own; the tests start their own, so stop it.
  service postgresql stop >/dev/null 2>&1 || true
fi
