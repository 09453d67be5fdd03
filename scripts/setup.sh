#!/usr/bin/env bash
# Create .venv (if needed) and install pertlearn into it with the pinned torch from constraints.txt.
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh test
# pip runs only when the requirements changed since the last set-up with the same extras (the
# install is editable, so source changes need none); delete .venv/.setup-* to force it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
spec="."
if [ -n "${1:-}" ]; then spec=".[$1]"; fi
stamp=".venv/.setup-${1:-base}"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e "$spec"
echo "$want" > "$stamp"
