"""One application shell for every stream stage (preagg, detect, and a notify stage to come).

The shell owns what every worker does the same way; a stage implements only its own hooks.

Shell: the run loop (until :meth:`App.request_stop`, SIGTERM/SIGINT, ``duration``, or end of input
after ``max_idle`` seconds without input), signal handlers (restored afterwards; off the main
thread only ``request_stop`` stops it), the GC policy, delivery tracking (:class:`Delivery`),
flush-then-commit (:meth:`App.commit_after_flush`), the consumer lag gauge, the metrics endpoint,
cpu/wall statistics, the stop log line, and closing the consumer and the producer.

A stage (:class:`Stage`) provides ``consumer``, ``producer``, ``topics`` and ``lag_gauge`` (after
``start``) and the hooks: ``start`` (create clients), ``on_assign``/``on_revoke`` (and optionally
``on_lost``), ``poll`` (consume and process one batch), ``on_idle`` (a turn without input),
``after_turn`` (periodic publish/checkpoint/commit), ``finish`` (end of input, stop: the last
commit) and ``close`` (its own extra clients and threads, after the consumer closed), optionally ``on_full_gc``.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from confluent_kafka import KafkaException

from .observability import log_event, serve_metrics
from .topics import consumer_lag

log = logging.getLogger("patrol.app")


class Stage(Protocol):
    consumer: object
    producer: object
    topics: list[str]
    lag_gauge: object

    def start(self) -> None: ...
    def on_assign(self, consumer, partitions) -> None: ...
    def on_revoke(self, consumer, partitions) -> None: ...
    def poll(self) -> bool: ...                     # one batch consumed and processed; True if any input
    def on_idle(self, input_ended: bool) -> bool: ...  # a turn without input; True: stop (end of input)
    def after_turn(self) -> None: ...
    def finish(self, reason: str) -> None: ...      # "signal", "duration" or "idle": last flush + commit
    def close(self) -> None: ...


class DeliveryFailed(KafkaException):
    """Records were not acknowledged: offsets after them must not be committed."""


class Delivery:
    """Producer delivery callback that keeps the errors (``on_delivery=delivery``)."""

    def __init__(self):
        self.errors: list[str] = []

    def __call__(self, err, msg) -> None:
        if err is not None:
            self.errors.append(str(err))

    def flush(self, producer, timeout: float = 30) -> str | None:
        """Flush ``producer``; why committing is unsafe, or None when everything was acknowledged."""
        left = producer.flush(timeout)
        if left or self.errors:
            return f"{left} records unacknowledged, delivery errors {self.errors[:3]}"
        return None


@dataclass
class GcPolicy:
    """Cyclic GC by hand. A batch's thousands of objects are alive while the automatic collector
    runs: they get promoted and full collections then rescan them (and long-lived state) many
    times a second. What a loop allocates is acyclic and freed by reference counting, so: young
    collections only when many tracked objects accumulated, a full one a minute to keep anything
    cyclic (exceptions, library internals) bounded. ``freeze`` moves survivors of a full
    collection out of later scans (for stages with large long-lived state)."""

    young_objects: int = 100_000
    full_every_s: float = 60.0
    freeze: bool = False

    def begin(self) -> bool:
        was = gc.isenabled()
        if self.freeze:
            gc.collect()
            gc.freeze()  # start-up objects are never garbage
        gc.disable()
        self._last_full = time.monotonic()
        return was

    def tick(self) -> float | None:
        """Collect as due; the seconds a full collection took, else None."""
        if gc.get_count()[0] > self.young_objects:
            gc.collect(1)
        now = time.monotonic()
        if now - self._last_full < self.full_every_s:
            return None
        gc.collect()
        if self.freeze:
            gc.freeze()
        self._last_full = time.monotonic()
        return self._last_full - now


class App:
    """Runs one stage: see the module docstring for who owns what."""

    def __init__(self, stage: Stage, name: str, gc_policy: GcPolicy | None = None,
                 metrics_port: int | None = None, registry=None):
        self.stage = stage
        self.name = name
        self.gc = gc_policy or GcPolicy()
        self.metrics_port = metrics_port
        self.registry = registry
        self.delivery = Delivery()
        self.stop_requested = False
        self.reason = ""
        self.started_wall = self.started_cpu = 0.0
        self.cpu_s = self.wall_s = self.thread_s = 0.0

    def request_stop(self, *_args) -> None:
        """Stop after the current turn (signal handler, or another thread)."""
        self.stop_requested = True

    def commit_after_flush(self, commit: Callable[[], None], timeout: float = 30) -> None:
        """Run ``commit`` only once every record produced so far is acknowledged (at-least-once)."""
        why = self.delivery.flush(self.stage.producer, timeout)
        if why:
            raise DeliveryFailed(f"not committing: {why}")
        commit()
        self.update_lag()

    def update_lag(self) -> None:
        try:
            self.stage.lag_gauge.set(consumer_lag(self.stage.consumer))
        except Exception as exc:  # KafkaException and the like: informative only, never fail a commit
            log.debug("could not read consumer lag: %s", exc)

    def run(self, duration: float | None = None, max_idle: float | None = None) -> str:
        """Run until stopped; returns why it stopped (``signal``, ``duration`` or ``idle``)."""
        if self.registry is not None:
            serve_metrics(self.metrics_port, self.registry)
        st = self.stage
        self.started_cpu, self.started_wall, thread0 = time.process_time(), time.monotonic(), time.thread_time()
        try:
            st.start()
            old = self._install_signals()
            gc_was_on = self.gc.begin()
            try:
                subscribe = {"on_assign": st.on_assign, "on_revoke": st.on_revoke}
                if hasattr(st, "on_lost"):  # the batch consumer has no on_lost
                    subscribe["on_lost"] = st.on_lost
                st.consumer.subscribe(list(st.topics), **subscribe)
                self.reason = self._loop(duration, max_idle)
                st.finish(self.reason)
            finally:
                if gc_was_on:
                    gc.enable()
                for sig, h in old.items():
                    signal.signal(sig, h)
        finally:
            self._close()
        self.cpu_s = time.process_time() - self.started_cpu
        self.wall_s = time.monotonic() - self.started_wall
        self.thread_s = time.thread_time() - thread0
        log_event(log, "stage stopped", stage=self.name, reason=self.reason, cpu_s=round(self.cpu_s, 3),
                  wall_s=round(self.wall_s, 3))
        return self.reason

    def _loop(self, duration: float | None, max_idle: float | None) -> str:
        st = self.stage
        last_input = time.monotonic()
        while not self.stop_requested:
            now = time.monotonic()
            if duration is not None and now - self.started_wall >= duration:
                return "duration"
            if st.poll():
                last_input = time.monotonic()
            elif st.on_idle(max_idle is not None and time.monotonic() - last_input >= max_idle):
                return "idle"
            st.after_turn()
            full_s = self.gc.tick()
            if full_s is not None and hasattr(st, "on_full_gc"):
                st.on_full_gc(full_s)
        return "signal"

    def _install_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}  # signal.signal works only there: the caller stops us with request_stop
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in old:
            signal.signal(sig, self.request_stop)
        return old

    def _close(self) -> None:
        st = self.stage
        try:
            # First: closing it revokes the partitions, and the stage's revoke commits through
            # clients of its own that close() then closes.
            if getattr(st, "consumer", None) is not None:
                st.consumer.close()
        finally:
            st.close()
            # Free the producer's client (and its broker connections: left open, it retried a
            # stopped broker for the life of the process). Only when nothing is outstanding, since
            # close() flushes without a deadline; what is still queued stays with the object.
            producer = getattr(st, "producer", None)
            if producer is not None and producer.flush(5) == 0 and hasattr(producer, "close"):
                producer.close()
