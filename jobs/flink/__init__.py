"""PyFlink jobs.

Reading guide: :mod:`jobs.flink.live_metrics` (the job: source, watermarks, keyed
windows, upsert), then :mod:`jobs.flink.windows` (the window math, Flink-free) and
:mod:`jobs.flink.decode` (wire format -> window events). Each job module exposes
``build_job(settings, ...)`` and ``main(argv)``.
"""
