#!/usr/bin/env bash
# Set up (first time) and run the checks: ruff (lint and format), mypy and the test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow" or scripts/test.sh -n 0.
set -euo pipefail
cd "$(dirname "$0")/.."
# tensorboard and mlflow: the experiment-tracking tests read exports back with the real libraries
scripts/setup.sh test,ray,tensorboard,mlflow
# Headless Chromium renders report.html in tests/unit/reports/test_html.py (Debian's package; skipped there
# when it cannot be installed).
if ! command -v chromium >/dev/null 2>&1; then
    as_root=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then as_root="sudo"; fi
    { $as_root apt-get update -qq \
        && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
        || echo "warning: could not install chromium; the report rendering test will skip" >&2
fi
# Tests marked full_data read the full MNIST test set from $PERTLEARN_DATA. A data folder
# beside the checkout (../shared/data, as this project's CI provides) is used when present;
# without one those tests are skipped with the reason. Under CI they must run: a missing
# data set fails them.
if [ -z "${PERTLEARN_DATA:-}" ] && [ -d ../shared/data ]; then
    PERTLEARN_DATA=$(cd ../shared/data && pwd)
    export PERTLEARN_DATA
fi
if [ "${CI:-}" = "true" ] || [ "${CI:-}" = "1" ]; then
    export PERTLEARN_REQUIRE_FULL_DATA=1
fi
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
exec .venv/bin/pytest -q -n "${PERTLEARN_TEST_WORKERS:-2}" "$@"
