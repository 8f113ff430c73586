"""What ``meshmetrics check`` and ``meshmetrics top`` know: they read a service's
``/metrics``, its manifest files and a running Prometheus from outside, and say what they
find.  The request path never imports them.

- :mod:`.findings`: a finding and its :class:`~.findings.Severity`;
- :mod:`.scrape`: the bounded GET of a ``/metrics`` page (``top`` reads with it too);
- :mod:`.exposition`, :mod:`.cardinality`, :mod:`.lint`, :mod:`.tracing`: what a page says;
- :mod:`.objects`, :mod:`.monitors`, :mod:`.mtls`: will the monitors select their targets,
  will Istio let Prometheus in;
- :mod:`.prometheus`: did a running Prometheus select them and load the rules;
- :mod:`.rates`: per-route rates between two scrapes (``top``).
"""
