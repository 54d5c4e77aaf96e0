#!/usr/bin/env bash
# Runs the whole test suite (unit, integration and qemu boot tests), after making sure the
# tools the tests need are installed.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --deps-only
exec python3 -m pytest -n 2 --dist loadgroup -p no:cacheprovider "$@"
