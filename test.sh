#!/usr/bin/env bash
# Install everything the tests need -- system packages (the peers), Python packages -- then run
# the whole suite.  Extra arguments go to pytest (e.g. `bash test.sh -k bus -x`).
set -euo pipefail
cd "$(dirname "$0")"

# System packages the tests' peers come from (Debian names): Prometheus (remote_write receiver,
# promtool), InfluxDB 1.x, the IPMI
# simulator and client (openipmi, ipmitool; libopenipmi-dev and gcc build the simulator's DCMI plugin),
# Kwapi's RRD files for the import tests (rrdtool), pty pairs for the serial meter (socat), a broker the MQTT tests can stop (mosquitto),
# the headless browser the web UI tests drive through Playwright (chromium; fonts-dejavu-core for its text and the PNG graphs).
need=()
for pkg in prometheus influxdb openipmi ipmitool libopenipmi-dev socat mosquitto gcc postgresql rrdtool chromium fonts-dejavu-core; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need+=("$pkg")
done
if ((${#need[@]})); then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

# PostgreSQL on 127.0.0.1:5432 (the PostgreSQL store's tests; they skip, saying why, without it).
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.installed-test ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
  touch .venv/.installed-test
fi
exec .venv/bin/pytest "$@"
