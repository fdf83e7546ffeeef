#!/usr/bin/env bash
# Debian's nginx and Caddy, for tests/test_reverse_proxy.py: the console's sites of
# deploy/nginx.conf and deploy/Caddyfile run for real in front of the daemon (the test starts
# each in the foreground with its own prefix, ports and certificate). Installed once; nothing
# started (apt's policy-rc.d keeps their services from starting in CI containers).
set -euo pipefail
t0=$(date +%s)
PATH="$PATH:/usr/sbin"
if ! command -v nginx >/dev/null 2>&1 || ! command -v caddy >/dev/null 2>&1; then
    echo "[nginx] apt-get install nginx caddy ..."
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        nginx caddy >/dev/null
fi
echo "[nginx] $(nginx -v 2>&1 | head -1), caddy $(caddy version 2>&1 | head -1) ($(( $(date +%s) - t0 ))s)"
