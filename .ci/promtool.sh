#!/usr/bin/env bash
# promtool (Debian's prometheus package), for tests/test_monitoring_files.py: the alert rules
# in deploy/prometheus/ are checked and unit-tested with it. Installed once; nothing started
# (apt's policy-rc.d keeps the prometheus service from starting in CI containers).
set -euo pipefail
t0=$(date +%s)
if ! command -v promtool >/dev/null 2>&1; then
    echo "[promtool] apt-get install prometheus ..."
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null
fi
echo "[promtool] $(promtool --version 2>&1 | head -1) ($(( $(date +%s) - t0 ))s)"
