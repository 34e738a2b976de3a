"""Spark batch jobs: the ClickHouse warehouse analysts query.

Reading guide: :mod:`jobs.spark.warehouse` (the job: read one day of the lake
or the topics, build the fact tables, replace that day's partitions), then
:mod:`jobs.spark.marts` (the marts, computed inside ClickHouse from the facts),
:mod:`jobs.spark.definitions` (sessions and retention stated in plain Python, which
the tests and the benchmark compute expected numbers from), and
:mod:`jobs.spark.submit` (spark-submit command lines with their JARs cached).
:mod:`jobs.spark.testing` writes synthetic game history into a lake.
"""
