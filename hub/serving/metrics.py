"""The inference server's Prometheus metrics (prometheus-client), in a registry of their own per app.

| metric | kind | labels |
|---|---|---|
| ``hub_inference_requests_total`` | counter | ``model``, ``status`` (the HTTP status) |
| ``hub_inference_request_seconds`` | histogram | ``model``: from the request read to the answer built |
| ``hub_inference_queue_seconds`` | histogram | ``model``: from queued to its batch starting |
| ``hub_inference_batch_size`` | histogram | ``model``: rows per batch run |
| ``hub_inference_model_loads_total`` | counter | ``model``: versions loaded (the first and each switch's) |
| ``hub_inference_model_switches_total`` | counter | ``model``: alias (or latest) moves followed |
| ``hub_inference_model_version`` | gauge | ``model``, ``ref``: the version served now |
"""

from __future__ import annotations

__all__ = ["Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The server's metrics; :meth:`exposition` is what ``/metrics`` answers."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("hub_inference_requests", "Infer requests answered", ["model", "status"], registry=self.registry)
        self.latency = Histogram("hub_inference_request_seconds", "Infer request latency", ["model"], buckets=_LATENCY,
                                 registry=self.registry)
        self.queue = Histogram("hub_inference_queue_seconds", "Time a request waited for its batch to start", ["model"],
                               buckets=_LATENCY, registry=self.registry)
        self.batch_size = Histogram("hub_inference_batch_size", "Rows per batch run", ["model"], buckets=_BATCH,
                                    registry=self.registry)
        self.loads = Counter("hub_inference_model_loads", "Versions loaded", ["model"], registry=self.registry)
        self.switches = Counter("hub_inference_model_switches", "Alias moves followed", ["model"], registry=self.registry)
        self.version = Gauge("hub_inference_model_version", "The version served now", ["model", "ref"], registry=self.registry)

    def observe_batch(self, model: str, rows: int, waits: list[float]) -> None:
        """Record a batch about to run: its rows and each request's time in the queue."""
        self.batch_size.labels(model).observe(rows)
        queue = self.queue.labels(model)
        for wait in waits:
            queue.observe(wait)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def answered(self, model: str, status: int, seconds: float | None) -> None:
        """Record an infer request's answer."""
        self.requests.labels(model, str(status)).inc()
        if seconds is not None:
            self.latency.labels(model).observe(seconds)
