#!/usr/bin/env bash
# Make sure Debian's redis-server is available for the tests: install it when missing and root.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "redis-server is missing and this is not root: run 'sudo apt-get install -y redis-server' and retry." >&2
  exit 1
fi
echo "installing Debian's redis-server (needed by the tests)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# Debian's package starts a system service; the tests start their own on free ports.
(service redis-server stop || true) >/dev/null 2>&1
command -v redis-server >/dev/null
