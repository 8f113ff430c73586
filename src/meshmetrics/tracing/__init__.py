"""Tracing: a fast OpenTracing tracer, B3/W3C propagation, export, and its Flask face.

Dependencies point one way: :mod:`.sampling` and :mod:`.propagation` know nothing;
:mod:`.spans` (the tracer) uses them; :mod:`.processor` and :mod:`.exporters` move
finished spans; :mod:`.server` (server spans) and :mod:`.client` (outgoing calls) are
the Flask face; :mod:`.backends` builds it all from a configuration.
"""
