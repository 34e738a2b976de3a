"""The host's CPU and the state folder's disk, for the CPU and disk-filling alerts.

One process per host exports these (the lag exporter), named after
node_exporter's families with a ``cosmic_host_`` prefix so that the alert rules
read the same either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import psutil
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class HostMetrics(Collector):
    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterable[Metric]:
        cpu = CounterMetricFamily("cosmic_host_cpu_seconds",
                                  "CPU time of all the host's cores, by mode.", labels=["mode"])
        times = psutil.cpu_times()
        for mode in ("user", "system", "idle", "iowait", "nice", "irq", "softirq", "steal"):
            if hasattr(times, mode):
                cpu.add_metric([mode], float(getattr(times, mode)))
        cores = GaugeMetricFamily("cosmic_host_cpus", "Logical CPUs of the host.",
                                  value=psutil.cpu_count() or 1)
        labels = ["path"]
        avail = GaugeMetricFamily("cosmic_host_filesystem_avail_bytes",
                                  "Bytes free to unprivileged users on the state folder's disk.",
                                  labels=labels)
        size = GaugeMetricFamily("cosmic_host_filesystem_size_bytes",
                                 "Size of the state folder's disk.", labels=labels)
        target = self.path if self.path.exists() else Path("/")
        usage = psutil.disk_usage(str(target))
        avail.add_metric([str(self.path)], usage.free)
        size.add_metric([str(self.path)], usage.total)
        return [cpu, cores, avail, size]
