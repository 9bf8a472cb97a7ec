#!/usr/bin/env bash
# Set up everything the tests need (scripts/setup.sh --test) and run the whole suite:
# lint, strict type checks, then every test, interop tests with the real tools included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
