"""The Kafka runtime: everything that talks to a broker or serves HTTP.

The engine (:mod:`streams.engine`) is the ground floor and never imports from here.
Modules, one concept each:

* :mod:`~streams.runtime.worker` — the Faust app: wiring, timers, lifecycle;
* :mod:`~streams.runtime.pipeline` — what happens to one message (decode, check,
  apply, or dead-letter), free of Faust so tests drive it directly;
* :mod:`~streams.runtime.deadletters` — dead-letter records that always fit;
* :mod:`~streams.runtime.changelog` — engine chunks as changelog records of any size;
* :mod:`~streams.runtime.web` — the HTTP views;
* :mod:`~streams.runtime.fastpath` — the batch transport under Faust;
* :mod:`~streams.runtime.producer`, :mod:`~streams.runtime.topics`,
  :mod:`~streams.runtime.broker` — producing, topic admin, the embedded broker;
* :mod:`~streams.runtime.tallies` — per-event counters as plain ints.
"""
