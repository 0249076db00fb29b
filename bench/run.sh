#!/usr/bin/env bash
# Every benchmark, one JSON line per figure (each script's --help says what it measures; README.md,
# "Performance", has the figures).
#   bash bench/run.sh            full figures (about 10 minutes on 2 cores)
#   bash bench/run.sh --quick    a smoke run with smaller inputs
set -euo pipefail
cd "$(dirname "$0")"
py=../.venv/bin/python
[ -x "$py" ] || { echo "run 'bash test.sh' (or 'bash run.sh') once first to create .venv" >&2; exit 2; }
$py -c 'import figures, json; print(json.dumps({"figure": "machine", "value": figures.machine(), "unit": ""}))'
$py store_engines.py "$@"
$py e2e.py "$@"
$py poll_jitter.py "$@"
$py ipmi_clients.py "$@"
$py pg_baseline.py "$@"
$py store_scale.py "$@"
$py store_queries.py "$@"
$py web_overview.py "$@"
$py web_page.py "$@"
