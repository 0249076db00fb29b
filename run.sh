#!/usr/bin/env bash
# Install wattsight into ./.venv (once) and run it: `bash run.sh` serves the embedded default on
# http://127.0.0.1:8080; extra arguments go to `wattsight run` (e.g. `bash run.sh --demo`).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/wattsight ] || [ pyproject.toml -nt .venv/.installed ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -e .
  touch .venv/.installed
fi
exec .venv/bin/wattsight run "$@"
