"""Batch and streaming jobs: ``flink/`` PyFlink jobs, ``spark/`` spark-submit jobs."""
