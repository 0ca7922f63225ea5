#!/usr/bin/env bash
# The Dockerfile's install steps as a script, since no Docker engine runs here:
# build the wheel, install it into a fresh virtualenv, start `portask serve` the way
# the image's CMD does, probe it with the image's HEALTHCHECK command, stop it with
# SIGTERM (what `docker stop` sends) and require a clean exit.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Same as the build stage: a wheel of this tree, no dependencies bundled.
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" . 2>&1 | grep -v "is ignored" || true
ls "$work"/wheels/portask-*.whl >/dev/null
# Same as the runtime stage: a clean environment with only the wheel and its dependencies.
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$work"/wheels/portask-*.whl 2>&1 | grep -v "is ignored" || true
"$work/venv/bin/portask" version

# The image listens on 0.0.0.0; here we keep to loopback and let the OS pick free ports.
mkdir -p "$work/data"
# The management API's port 0 means "off": take one that is free now.
mport=$("$work/venv/bin/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$work/venv/bin/portask" serve --host 127.0.0.1 --data-dir "$work/data" \
  --kafka-port 0 --amqp-port 0 --http-port 0 --set "http.management_port=$mport" \
  >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 100); do
  grep -q "http listening" "$work/out" 2>/dev/null && break
  sleep 0.1
done
port=$(sed -n 's/^portask: http listening on .*:\([0-9]*\)$/\1/p' "$work/out")
[ -n "$port" ] || { echo "install smoke: broker did not start"; cat "$work/err"; exit 1; }
# The HEALTHCHECK command of the Dockerfile, with the port found above.
"$work/venv/bin/python" -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=2).status == 200 else 1)"
# The management API answers from the installed wheel (guest/guest).
"$work/venv/bin/python" -c "import urllib.request,json,base64,sys; r=urllib.request.Request('http://127.0.0.1:$mport/api/whoami', headers={'Authorization': 'Basic ' + base64.b64encode(b'guest:guest').decode()}); sys.exit(0 if json.load(urllib.request.urlopen(r, timeout=2))['name'] == 'guest' else 1)"
# The web console and its Kafka API are served from the files in the wheel.
"$work/venv/bin/python" -c "import urllib.request,json,base64,sys; h={'Authorization': 'Basic ' + base64.b64encode(b'guest:guest').decode()}; g=lambda p: urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:$port' + p, headers=h), timeout=5); page=g('/').read(); js=g('/console/app.js').read(); k=json.load(g('/kafka/v1')); sys.exit(0 if b'/console/app.js' in page and b'export' in js and k['kafka_served'] else 1)"
kill -TERM "$pid"
wait "$pid"
status=$?
pid=""
[ "$status" -eq 0 ] || { echo "install smoke: exit status $status"; cat "$work/err"; exit 1; }
echo "install smoke: wheel installs, serves, reports healthy and stops cleanly"
