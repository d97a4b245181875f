"""Prometheus collectors over a model runtime's `stats()`, read at scrape time (no torch import here)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# stats() key -> (metric name without prefix, help, kind); counters get "_total" from the client library
_PER_MODEL: tuple[tuple[str, str, str, str], ...] = (
    ("bytes", "model_bytes", "Bytes of a model's weights on the device when resident", "gauge"),
    ("uses", "model_uses", "Calls served with the model", "counter"),
    ("loads", "model_loads", "Loads of the model from disk", "counter"),
    ("swaps_in", "model_swaps_in", "Host-to-device swaps of an evicted model", "counter"),
    ("evictions", "model_evictions", "Evictions of the model from the device", "counter"),
    ("bytes_from_disk", "model_disk_read_bytes", "Bytes of weights read from disk", "counter"),
    ("bytes_moved", "model_moved_bytes", "Bytes copied between host and device", "counter"),
    ("wait_seconds", "model_wait_seconds", "Time calls waited for the device", "counter"),
    ("load_seconds", "model_load_seconds", "Time spent loading from disk", "counter"),
    ("swap_seconds", "model_swap_seconds", "Time spent swapping in and out", "counter"),
)


class RuntimeCollector(Collector):
    """Yields the runtime's budget, use, queue and per-model counters, labelled by device and model."""

    def __init__(self, stats: Callable[[], dict[str, Any]], prefix: str = "adgraph_gpu") -> None:
        self._stats = stats
        self._prefix = prefix

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        p, device = self._prefix, s["device"]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(f"{p}_{name}", doc, labels=["device"])
            g.add_metric([device], value)
            return g

        yield gauge("budget_bytes", "Memory budget for resident models", s["budget_bytes"])
        yield gauge("used_bytes", "Bytes of the resident models", s["used_bytes"])
        yield gauge("queue_depth", "Calls waiting for the device", s["queue_depth"])
        yield gauge("busy", "1 while a call holds the device", 1 if s["busy"] else 0)
        oom = CounterMetricFamily(f"{p}_oom_retries", "Out-of-memory errors retried", labels=["device"])
        oom.add_metric([device], s["oom_retries"])
        yield oom
        fail = CounterMetricFamily(f"{p}_oom_failures", "Out-of-memory failures", labels=["device"])
        fail.add_metric([device], s["oom_failures"])
        yield fail

        resident = GaugeMetricFamily(
            f"{p}_model_resident", "1 if the model is on the device", labels=["device", "model"]
        )
        for name, m in s["models"].items():
            resident.add_metric([device, name], 1 if m["state"] == "device" else 0)
        yield resident
        for key, metric, doc, kind in _PER_MODEL:
            family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = family_type(f"{p}_{metric}", doc, labels=["device", "model"])
            for name, m in s["models"].items():
                family.add_metric([device, name], m[key])
            yield family


def register_runtime_metrics(
    runtime: Any, registry: CollectorRegistry, prefix: str = "adgraph_gpu"
) -> RuntimeCollector:
    """Register a collector reading `runtime.stats()` on every scrape; returns it (to unregister)."""
    collector = RuntimeCollector(runtime.stats, prefix)
    registry.register(collector)
    return collector
