#!/usr/bin/env bash
# Servers the tests start themselves but that come from Debian: PostgreSQL (throwaway clusters), PgBouncer
# (transaction mode in front of one), rsyslog
# with its TLS driver (the SIEM receiver of the export tests), and Prometheus with promtool (rule checks,
# rule unit tests, a scrape of a running stack).
set -euo pipefail
need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
[ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
[ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
[ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || [ -e /usr/lib/rsyslog/lmnsd_gtls.so ] || need+=(rsyslog-gnutls)
{ [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; } || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test prerequisites from Debian: ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The packages start servers of their own; the tests start their own, so stop them.
  service postgresql stop >/dev/null 2>&1 || true
  service pgbouncer stop >/dev/null 2>&1 || true
  service rsyslog stop >/dev/null 2>&1 || true
  service prometheus stop >/dev/null 2>&1 || true
fi
