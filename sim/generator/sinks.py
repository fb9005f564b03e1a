"""Outputs (file, Kafka), wall-clock pacing, progress reporting, and the driver loop."""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Callable, Iterable, Iterator

import numpy as np

from .traffic import Chunk


class FileSink:
    """Newline-terminated lines to a file path or ``"-"`` (stdout)."""

    def __init__(self, path: str):
        self.path = path
        self._fh: IO[bytes] = sys.stdout.buffer if path == "-" else open(path, "wb")
        self.sent = 0
        self.errors = 0

    def write(self, chunk: Chunk) -> None:
        if chunk.lines:
            # One join + write per chunk: per-line writes would dominate the cost.
            self._fh.write(b"\n".join(chunk.lines) + b"\n")
            self.sent += len(chunk.lines)

    def close(self) -> None:
        if self.path == "-":
            self._fh.flush()
        else:
            self._fh.close()


class KafkaSink:
    """confluent-kafka producer keyed by ``$proxy_upstream_name``.

    Batching (linger.ms) and lz4 compression keep throughput high; a full local queue
    (BufferError) is drained by polling, never dropped. Delivery failures are counted.
    """

    DEFAULTS = {
        "linger.ms": 50,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 1_048_576,
        # Only failures call back: one Python call per message would halve throughput.
        "delivery.report.only.error": True,
    }

    def __init__(self, bootstrap: str, topic: str, config: dict | None = None):
        from confluent_kafka import Producer

        self.topic = topic
        self.sent = 0
        self.errors = 0
        self.first_error: str | None = None
        conf = {"bootstrap.servers": bootstrap, **self.DEFAULTS, **(config or {}), "on_delivery": self._on_delivery}
        self._p = Producer(conf)

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.errors += 1
            if self.first_error is None:
                self.first_error = str(err)

    def write(self, chunk: Chunk) -> None:
        produce, poll, topic = self._p.produce, self._p.poll, self.topic
        for key, line in zip(chunk.keys, chunk.lines):
            while True:
                try:
                    produce(topic, line, key)
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    poll(0.05)
        self.sent += len(chunk.lines)
        poll(0)

    def close(self, timeout: float = 60.0) -> None:
        left = self._p.flush(timeout)
        self._p = None  # release librdkafka now, not at garbage collection (no reconnect noise later)
        if left:
            self.errors += left
            self.first_error = self.first_error or f"{left} messages still queued after {timeout}s flush"


class Pacer:
    """Releases chunk slices on a wall-clock schedule.

    ``speedup`` maps event time to wall time (event seconds per wall second); ``rate`` fixes
    lines per wall second instead. Neither: as fast as possible.
    """

    SLICE = 512  # lines per release: small enough for smooth pacing at demo rates

    def __init__(self, speedup: float | None = None, rate: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        # clock and sleep are injectable so the schedule can be checked without waiting on a real clock
        self._clock, self._sleep = clock, sleep
        if speedup is not None and speedup <= 0:
            speedup = None
        self.speedup, self.rate = speedup, rate
        self._wall0: float | None = None
        self._ev0 = 0.0
        self._n = 0

    @property
    def paced(self) -> bool:
        return bool(self.speedup or self.rate)

    def slices(self, chunk: Chunk) -> Iterator[Chunk]:
        if not self.paced:
            yield chunk
            return
        if self._wall0 is None and len(chunk):
            self._wall0, self._ev0 = self._clock(), float(chunk.times[0])
        # About 20 releases per wall second at low rates, so pacing stays smooth.
        if self.rate:
            per_wall_s = self.rate
        else:
            span = max(float(chunk.times[-1] - chunk.times[0]), 1e-3) if len(chunk) else 1.0
            per_wall_s = len(chunk) * self.speedup / span
        step = max(1, min(self.SLICE, int(per_wall_s / 20)))
        for i in range(0, len(chunk), step):
            if self.rate:
                due = self._wall0 + self._n / self.rate
            else:
                due = self._wall0 + (float(chunk.times[i]) - self._ev0) / self.speedup
            delay = due - self._clock()
            if delay > 0:
                self._sleep(delay)
            part = Chunk(chunk.times[i:i + step], chunk.keys[i:i + step], chunk.lines[i:i + step])
            self._n += len(part)
            yield part


class Progress:
    """A periodic one-line status on stderr (works in logs and pipes, unlike a redrawn bar)."""

    def __init__(self, enabled: bool = True, every: float = 2.0, stream: IO[str] | None = None):
        self.enabled, self.every = enabled, every
        self.stream = stream or sys.stderr
        self._t0 = self._last = time.monotonic()

    def line(self, sent: int, event_t: float | None, errors: int, incidents: int) -> str:
        el = max(time.monotonic() - self._t0, 1e-9)
        ev = datetime.fromtimestamp(event_t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if event_t else "-"
        return (f"generate: {sent:,} lines  {sent / el:,.0f} lines/s  event time {ev}Z  "
                f"incidents started {incidents}  delivery errors {errors}")

    def update(self, sent: int, event_t: float | None, errors: int, incidents: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.enabled and (final or now - self._last >= self.every):
            self._last = now
            print(self.line(sent, event_t, errors, incidents), file=self.stream, flush=True)


@dataclass
class RunResult:
    """What a run produced: lines written, delivery errors, last event time, stop reason."""

    sent: int
    errors: int
    last_event: float | None
    reason: str
    first_error: str | None = None


def run(chunks: Iterable[Chunk], sink, pacer: Pacer | None = None, lines: int | None = None,
        wall_duration: float | None = None, progress: Progress | None = None,
        on_chunk: Callable[[float], int] | None = None, stop: Callable[[], bool] | None = None) -> RunResult:
    """Drive ``chunks`` into ``sink`` until exhausted, ``lines`` written, ``wall_duration`` passed
    or ``stop()`` is true; the sink is closed (Kafka: flushed) whatever ends the run.

    ``on_chunk(last_event_time)`` is called after each write and returns the number of incidents
    started so far (for the progress line).
    """
    pacer = pacer or Pacer()
    t_end = time.monotonic() + wall_duration if wall_duration else None
    st = {"sent": 0, "last": None, "incidents": 0}

    def drive() -> str:
        for chunk in chunks:
            for part in pacer.slices(chunk):
                if lines is not None and st["sent"] + len(part) > lines:
                    k = lines - st["sent"]
                    part = Chunk(part.times[:k], part.keys[:k], part.lines[:k])
                if len(part):
                    sink.write(part)
                    st["sent"] += len(part)
                    st["last"] = float(part.times[-1])
                    if on_chunk:
                        st["incidents"] = on_chunk(st["last"])
                if lines is not None and st["sent"] >= lines:
                    return "lines"
                if t_end is not None and time.monotonic() >= t_end:
                    return "wall_duration"
                if stop is not None and stop():
                    return "stopped"
                if progress:
                    progress.update(st["sent"], st["last"], sink.errors, st["incidents"])
        return "exhausted"

    try:
        reason = drive()
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        sink.close()
    if progress:
        progress.update(st["sent"], st["last"], sink.errors, st["incidents"], final=True)
    return RunResult(st["sent"], sink.errors, st["last"], reason, getattr(sink, "first_error", None))


def _as_chunks(items: Iterable, size: int = 4096) -> Iterator[Chunk]:
    """Accept Chunks or ``(t, key, line)`` / ``(t, line)`` tuples; group tuples into Chunks."""
    it = iter(items)
    for first in it:
        if isinstance(first, Chunk):
            yield first
            yield from it  # type: ignore[misc]
            return
        for group in itertools.chain([[first] + list(itertools.islice(it, size - 1))],
                                     iter(lambda: list(itertools.islice(it, size)), [])):
            ts = np.array([g[0] for g in group], dtype=float)
            keys = [g[1] if len(g) == 3 else None for g in group]
            lines = [g[-1] for g in group]
            yield Chunk(ts, keys, lines)


def write_kafka(bootstrap: str, topic: str, lines_iter: Iterable, rate: float | None = None,
                speedup: float | None = None, progress: bool = False, config: dict | None = None,
                lines: int | None = None, wall_duration: float | None = None) -> RunResult:
    """Produce generated lines to Kafka (key = ``$proxy_upstream_name``).

    Parameters
    ----------
    bootstrap, topic : str
        Broker address ``HOST:PORT`` and topic name.
    lines_iter : iterable
        ``(t, key, line)`` tuples (e.g. :func:`generate_lines`) or :class:`Chunk` objects.
    rate : float, optional
        Wall-clock lines per second; ``speedup`` paces by event time instead; neither = max speed.
    progress : bool
        Periodic status line on stderr.
    config : dict, optional
        Extra librdkafka settings (security, acks...).

    Returns
    -------
    RunResult
        ``errors`` counts failed deliveries; callers should treat ``errors > 0`` as failure.
    """
    sink = KafkaSink(bootstrap, topic, config)
    return run(_as_chunks(lines_iter), sink, Pacer(speedup, rate), lines=lines, wall_duration=wall_duration,
               progress=Progress(progress))


def write_file(path: str, lines_iter: Iterable, rate: float | None = None, speedup: float | None = None,
               progress: bool = False, lines: int | None = None) -> RunResult:
    """Write generated lines to ``path`` (``"-"`` = stdout); arguments as :func:`write_kafka`."""
    return run(_as_chunks(lines_iter), FileSink(path), Pacer(speedup, rate), lines=lines, progress=Progress(progress))
