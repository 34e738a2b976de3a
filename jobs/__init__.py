"""Jobs over the event topics: ``flink/`` streaming (PyFlink), ``spark/`` batch (spark-submit).

- :mod:`jobs.flink`: the live metrics job, event-time windows from the Kafka
  topics upserted into TimescaleDB. Start at :mod:`jobs.flink.live_metrics`.
- :mod:`jobs.spark`: the nightly warehouse build, from the archive lake (or the
  topics) into ClickHouse. Start at :mod:`jobs.spark.warehouse`.
- :mod:`jobs.process`: a job as a platform service in its own process, for
  ``cosmic up --with NAME`` and the tests.

Every job module has ``build_job(settings, ...)`` (the addressable object)
and ``main(argv)`` (what ``cosmic jobs run NAME``, ``flink run`` or
``spark-submit`` call). Jobs read and write the stores through
:mod:`connectors.stores`.
"""
