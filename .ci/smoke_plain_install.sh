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
grep -q meshmetrics_metrics <<<"$routes"
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
"$venv/bin/python" - <<'PY'
import plainapp
client = plainapp.app.test_client()
assert client.get("/hello").status_code == 200
text = client.get("/metrics").get_data(as_text=True)
assert 'flask_http_request_total{method="GET",path="/hello",status="200"} 1.0' in text, text
assert "process_cpu_seconds_total" in text
PY
echo "plain install: flask CLI, meshmetrics CLI, extra hints, request and scrape OK"
