#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the dashboard's browser tests.
# Playwright drives it as it is: no browser is ever downloaded (`playwright install` is not used).
set -euo pipefail

say() { printf '==> %s\n' "$*"; }
CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  say "Chromium is at $CHROMIUM"
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing Chromium from Debian packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  [ -x "$CHROMIUM" ] && exit 0
fi
cat >&2 <<MSG
error: $CHROMIUM is missing and cannot be installed from here. The dashboard's browser tests
need Debian's Chromium: run 'sudo apt-get install chromium' (or this as root on Debian).
MSG
exit 1
