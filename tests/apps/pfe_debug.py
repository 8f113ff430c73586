"""prometheus-flask-exporter under the werkzeug reloader: /metrics silently disappears."""

import sys

from flask import Flask
from prometheus_flask_exporter import PrometheusMetrics

app = Flask("pfe-debug")
PrometheusMetrics(app)


@app.route("/")
def index() -> str:
    return "the app answers"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), debug=True)
