#!/usr/bin/env bash
# The browser tests (tests/agent_api/test_browser.py) drive Debian's Chromium. `make test` runs this first:
# it installs the package where it can (root with apt) and otherwise says why, and those tests skip saying so.
set -u
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: not root with apt-get; the browser tests will skip (install Debian's chromium to run them)"
    exit 0
fi
echo "install-chromium: installing Debian's chromium for the browser tests (once)"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium >/tmp/crmhub-chromium-install.log 2>&1 \
    || { apt-get update -q >>/tmp/crmhub-chromium-install.log 2>&1 \
         && apt-get install -y -q chromium >>/tmp/crmhub-chromium-install.log 2>&1; } \
    || echo "install-chromium: apt-get could not install chromium (see /tmp/crmhub-chromium-install.log); the browser tests will skip"
exit 0
