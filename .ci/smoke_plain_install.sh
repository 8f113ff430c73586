#!/usr/bin/env bash
# A plain install (no extras) is a complete product for the request path: the flask CLI
# loads, `meshmetrics --help` works, a missing extra is one line and exit 2, tracing asked
# for by environment fails at instrument() naming the extra, requests and a scrape work.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$(mktemp -d)/plain
python3 -m venv "$venv"
"$venv/bin/pip" install -q "$root"
cd "$(mktemp -d)"
cat > plainapp.py <<'PY'
from flask import Flask
from meshmetrics import instrument

app = Flask("plain")
app.add_url_rule("/hello", "hello", lambda: "hi")
instrument(app)
PY
routes=$("$venv/bin/flask" --app plainapp routes)  # (no pipe into grep -q: SIGPIPE)
grep -q /hello <<<"$routes"
# the metrics endpoint is served at the WSGI boundary: no route of the app's
if grep -q /metrics <<<"$routes"; then echo "flask routes lists /metrics: $routes"; exit 1; fi
usage=$("$venv/bin/meshmetrics" --help)
grep -q manifests <<<"$usage"
"$venv/bin/python" -m meshmetrics --help >/dev/null
set +e
out=$("$venv/bin/python" -m meshmetrics manifests --service x 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && grep -q "pip install 'meshmetrics\[manifests\]'" <<<"$out"
set +e
out=$(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 "$venv/bin/python" -c 'import plainapp' 2>&1); rc=$?
set -e
[ "$rc" != 0 ] && grep -q "pip install 'meshmetrics\[otlp\]'" <<<"$out"
# `flask run` serves it on a port of its own choosing; it reports the address it got
"$venv/bin/flask" --app plainapp run --port 0 > run.log 2>&1 &
flask_pid=$!
trap 'kill $flask_pid 2>/dev/null || true' EXIT
port=""
for _ in $(seq 100); do
    port=$(grep -o 'http://127.0.0.1:[0-9]*' run.log | head -1 | cut -d: -f3 || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat run.log; exit 1; }
"$venv/bin/python" - "$port" <<'PY'
import sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(50):
    try:
        assert urllib.request.urlopen(f"{base}/hello", timeout=5).read() == b"hi"
        break
    except OSError:
        time.sleep(0.1)
text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
assert 'path="/hello",status="200"} 1.0' in text, text
PY
kill $flask_pid
"$venv/bin/python" - <<'PY'
import plainapp
client = plainapp.app.test_client()
assert client.get("/hello").status_code == 200
text = client.get("/metrics").get_data(as_text=True)
assert 'flask_http_request_total{method="GET",path="/hello",status="200"} 1.0' in text, text
assert "process_cpu_seconds_total" in text
PY
echo "plain install: flask routes and run, meshmetrics CLI, extra hints, request and scrape OK"
