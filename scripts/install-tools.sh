#!/usr/bin/env bash
# Debian's Prometheus, promtool, Alertmanager, amtool, VictoriaMetrics (the
# remote_write target) and Chromium (headless, for the seller pages) for the e2e tests.
# Idempotent and quiet when everything is there; needs root or sudo otherwise.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v victoria-metrics >/dev/null 2>&1 || need+=(victoria-metrics)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing ${need[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian starts nothing by itself here (no systemd); make sure of it anyway. Only the
# packages' services, which run as their system users: the tests' own instances run
# as the caller and are left alone.
$SUDO pkill -x -u prometheus prometheus 2>/dev/null || true
$SUDO pkill -x -u prometheus prometheus-alertmanager 2>/dev/null || true
$SUDO pkill -x -u _victoria-metrics victoria-metrics 2>/dev/null || true
