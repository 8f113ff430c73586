"""An instrumented app with custom metrics, for the manifest and Prometheus tests.

Loadable as ``apps.shop``, ``apps.shop:app``, ``apps.shop:create_app()`` or by file path.
"""

from __future__ import annotations

import random
import time

from flask import Flask, abort
from prometheus_client import Gauge, Summary

from meshmetrics import instrument


def create_app() -> Flask:
    app = Flask("shop")
    inst = instrument(app, service="shop", namespace="shop-ns", release="komplete-prometheus")
    metrics = inst.metrics
    stock = Gauge("shop_stock_items", "Items in stock", ("warehouse",), registry=inst.registry)
    stock.labels("north").set(42)
    payment = Summary("shop_payment_seconds", "Payment provider time", registry=inst.registry)

    @app.route("/orders/<order_id>")
    @metrics.counter("shop_orders", "Orders served", labels={"status": lambda r: r.status_code})
    @metrics.histogram("shop_order_lookup_seconds", "Order lookup time")
    def order(order_id: str) -> dict[str, str]:
        if order_id == "missing":
            abort(404)
        if order_id == "broken":
            raise RuntimeError("database unavailable")
        with payment.time():
            time.sleep(random.uniform(0, 0.003))
        return {"order_id": order_id}

    @app.route("/health")
    def health() -> str:
        return "ok"

    return app


app = create_app()
