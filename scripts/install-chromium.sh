#!/usr/bin/env bash
# Debian's Chromium for the report's browser test (tests/test_report_browser.py drives it headless over the DevTools
# protocol). Nothing to do when a Chromium is already on PATH (or AUTOTUNE_CHROMIUM names one). Installing needs
# root and apt-get (CI runs as root on Debian); elsewhere it says what to do and leaves the test to skip, except
# under CI=true, where a missing browser fails the test instead of skipping it.
set -euo pipefail

if [ -n "${AUTOTUNE_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: no Chromium found; install Debian's chromium package (apt-get install chromium) or set" \
         "AUTOTUNE_CHROMIUM to a Chromium binary, or the report's browser test is skipped" >&2
    exit 0
fi
echo "installing Debian's chromium for the report's browser test"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
