"""A Flask app without instrumentation (the manifests command must refuse it)."""

from flask import Flask

app = Flask("plain")
