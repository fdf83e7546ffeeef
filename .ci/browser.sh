#!/usr/bin/env bash
# Debian's chromium and chromium-driver, for the console's browser tests (tests/browser/,
# Selenium with /usr/bin/chromedriver passed explicitly: nothing downloads a browser or a
# driver). Installed once; nothing started.
set -euo pipefail
t0=$(date +%s)
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "[browser] apt-get install chromium chromium-driver ..."
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        chromium chromium-driver >/dev/null
fi
echo "[browser] $(/usr/bin/chromium --version 2>/dev/null | head -1), $(/usr/bin/chromedriver --version 2>&1 | head -1 | cut -d' ' -f1-2) ($(( $(date +%s) - t0 ))s)"
