"""The Service a monitor selects: its ``app`` label and port *names* must agree."""

from __future__ import annotations

from typing import Any

from .metadata import object_labels, object_metadata
from .model import ServiceModel
from .options import ManifestOptions


def service(model: ServiceModel, options: ManifestOptions) -> dict[str, Any]:
    """The Service the monitor selects: its ``app`` label and port *name* must agree."""
    c = model.config
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(c.service, c.namespace, object_labels(model, release=False)),
        "spec": {
            "selector": {"app": c.service},
            "ports": [
                {
                    "name": c.port_name,
                    "port": options.service_port,
                    "targetPort": options.target_port or options.service_port,
                    "protocol": "TCP",
                },
                *(
                    [
                        {
                            "name": c.metrics_port_name,
                            "port": c.metrics_port,
                            "targetPort": c.metrics_port,
                            "protocol": "TCP",
                        }
                    ]
                    if c.metrics_port is not None
                    else []
                ),
            ],
        },
    }
