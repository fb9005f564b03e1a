"""Chunked generation loop tying the traffic model and the incident schedule together."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import IO, Iterator

import numpy as np

from .incidents import GroundTruthWriter, Schedule, parse_duration
from .traffic import Batch, Chunk, TrafficModel


def resolve_start(start: float | int | str | datetime | None) -> float:
    """Epoch seconds of the run start.

    ``None`` means today 00:00 UTC: the run opens at the nightly trough, and the same seed on the
    same day gives the same traffic. Accepts epoch seconds, ISO 8601 text or a datetime.
    """
    if start is None:
        now = datetime.now(timezone.utc)
        return datetime(now.year, now.month, now.day, tzinfo=timezone.utc).timestamp()
    if isinstance(start, (int, float)):
        return float(start)
    if isinstance(start, str):
        start = datetime.fromisoformat(start.replace("Z", "+00:00"))
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    return start.timestamp()


class Generator:
    """A seeded traffic source: model + incident schedule + draw stream.

    Parameters
    ----------
    seed : int
        Same seed, start and parameters give byte-identical output.
    start : float, str, datetime or None
        Simulated start time (see :func:`resolve_start`); floored to the second.
    incidents : str
        ``"default"``, ``"none"`` or a spec such as ``"error_spike@2h:20m,latency_spike@5h:15m"``.
    chunk_lines : int
        Target lines per generated chunk (vectorisation granularity).
    **model_kw
        Passed to :class:`TrafficModel` (``base_rate``, ``n_clients``, ``trough_ratio``...).
    """

    def __init__(self, seed: int = 0, start=None, incidents: str = "default", chunk_lines: int = 8192, **model_kw):
        self.model = TrafficModel(seed=seed, **model_kw)
        self.start = float(math.floor(resolve_start(start)))
        self.schedule = Schedule(self.model, self.start, incidents, seed)
        self.chunk_lines = chunk_lines
        self._rng = np.random.default_rng([seed, 1])

    def chunks(self, end: float | None = None) -> Iterator[Chunk]:
        """Rendered chunks in event-time order, until event time ``end`` (epoch s) or forever."""
        model, rng, sec = self.model, self._rng, int(self.start)
        while end is None or sec < end:
            # Size the chunk in simulated seconds so it holds about chunk_lines lines.
            nsec = int(np.clip(math.ceil(self.chunk_lines / float(model.rate(sec + 0.5))), 1, 3600))
            secs = np.arange(sec, sec + nsec, dtype=np.int64)
            incs = self.schedule.active(sec, sec + nsec)
            parts = [model.base_batch(secs, rng)]
            for inc in incs:
                extra = inc.extra(model, secs, rng)
                if extra is not None and len(extra):
                    parts.append(extra)
            b = Batch.concat(parts)
            model.decide_status(b, rng)
            for inc in incs:
                inc.modify(model, b, rng)
            chunk = model.render(b, rng)
            if end is not None and len(chunk) and chunk.times[-1] >= end:
                # Cut after rendering so the random stream, hence the prefix, matches unbounded runs.
                k = int(np.searchsorted(chunk.times, end))
                chunk = Chunk(chunk.times[:k], chunk.keys[:k], chunk.lines[:k])
            yield chunk
            sec += nsec


def generate_chunks(n: int | None = None, seed: int = 0, start=None, incidents: str = "default",
                    duration: float | str | None = None, ground_truth: str | IO[str] | None = None,
                    **model_kw) -> Iterator[Chunk]:
    """Generate traffic as :class:`Chunk` objects (fastest API: lists of lines per chunk).

    Parameters
    ----------
    n : int, optional
        Stop after this many lines.
    duration : float or str, optional
        Stop after this much *simulated* time (seconds or ``"2h"``).
    ground_truth : path or text file, optional
        Receives one JSON line per incident once generation reaches its start.
    Other parameters as in :class:`Generator`.
    """
    gen = Generator(seed=seed, start=start, incidents=incidents, **model_kw)
    end = gen.start + parse_duration(str(duration)) if duration is not None else None
    fh = open(ground_truth, "w") if isinstance(ground_truth, str) else ground_truth
    gt = GroundTruthWriter(gen.schedule, fh)
    left = n
    try:
        for chunk in gen.chunks(end):
            if left is not None and len(chunk) >= left:
                chunk = Chunk(chunk.times[:left], chunk.keys[:left], chunk.lines[:left])
                left = 0
            elif left is not None:
                left -= len(chunk)
            if len(chunk):
                gt.advance(float(chunk.times[-1]))
                yield chunk
            if left == 0:
                return
    finally:
        if isinstance(ground_truth, str) and fh is not None:
            fh.close()


def generate_lines(n: int | None = None, seed: int = 0, start=None, incidents: str = "default",
                   duration: float | str | None = None, ground_truth: str | IO[str] | None = None,
                   **model_kw) -> Iterator[tuple[float, bytes, bytes]]:
    """Generate ``(event_epoch_seconds, kafka_key, line)`` tuples; see :func:`generate_chunks`.

    The key is ``$proxy_upstream_name`` (e.g. ``b"shop-cart-api-8080"``); the line has no newline.
    """
    for chunk in generate_chunks(n, seed, start, incidents, duration, ground_truth, **model_kw):
        yield from zip(chunk.times.tolist(), chunk.keys, chunk.lines)
