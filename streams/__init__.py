"""popstream: real-time seller-performance monitoring for marketplaces.

The package splits along one line: :mod:`streams.engine` is pure Python (no Kafka,
no Faust, no Prometheus) and turns events into exact metrics; everything else
(replay, the worker, the exporter, the CLI) is I/O around it.
"""

__version__ = "0.1.0"
