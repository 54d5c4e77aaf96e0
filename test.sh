#!/usr/bin/env bash
# Runs the whole test suite (unit, integration and qemu boot tests), after making sure the
# tools the tests need are installed (the suite runs in setup.sh's virtual environment).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --deps-only
# The tests run the venv's programs too (rdforge itself, virt-fw-vars for Secure Boot keys).
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python3 -m pytest -n 2 --dist loadgroup -p no:cacheprovider "$@"
