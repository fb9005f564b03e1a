"""Durable per-series model state: Redis when it answers, process memory while it does not.

Layout: one Redis hash per series, ``{prefix}series:{series_key}``, with fields

- ``state``: the detector state (JSON, versioned by ``format``),
- ``last_window``: epoch seconds of the last window learned (replays at or before it are duplicates),
- ``model_version``: bumps when labels retrain the series,
- ``updated``: wall time of the checkpoint.

plus a set ``{prefix}series`` of all keys for ``patrol models list``. Writes are pipelined in
chunks. If Redis is down, ``checkpoint`` keeps the dirty states in memory, reports the outage
through ``healthy`` / the returned error, and writes them when Redis answers again.

Threads: the detect worker writes checkpoints from one background thread while its consume loop
may load new series, so the in-memory backlog is guarded by a lock; the Redis I/O itself happens
outside the lock (redis-py's connection pool gives each thread its own connection).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Iterable, Iterator

log = logging.getLogger("patrol.models.store")

STATE_FORMAT = 1
WRITE_CHUNK = 500  # series per pipeline round trip: bounds memory and how long one burst of writing takes


@dataclass
class SeriesState:
    """What is kept per series between checkpoints."""

    series: str
    state: dict[str, Any]
    last_window: float = float("-inf")
    model_version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)  # incident tracking, history, label effects

    def to_fields(self) -> dict[str, str]:
        return {
            "format": str(STATE_FORMAT),
            "state": json.dumps(self.state, separators=(",", ":")),
            "last_window": repr(float(self.last_window)),
            "model_version": str(self.model_version),
            "extra": json.dumps(self.extra, separators=(",", ":")),
            "updated": repr(time.time()),
        }

    @classmethod
    def from_fields(cls, series: str, f: dict[bytes | str, bytes | str]) -> "SeriesState":
        g = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in f.items()}
        fmt = int(g.get("format", "1"))
        if fmt > STATE_FORMAT:
            raise ValueError(f"state of {series} has format {fmt}, newer than this reader's {STATE_FORMAT}")
        return cls(series=series, state=json.loads(g["state"]), last_window=float(g.get("last_window", "-inf")),
                   model_version=int(g.get("model_version", "1")), extra=json.loads(g.get("extra", "{}")))


class StateStore:
    """Redis-backed store with an in-memory fallback. ``url=None`` means memory only (said in logs)."""

    def __init__(self, url: str | None, prefix: str = "patrol:", socket_timeout: float = 2.0):
        self.prefix = prefix
        self.url = url
        self._redis = None
        self._memory: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()  # guards _memory (checkpoint writer thread vs consume loop)
        self.healthy = url is not None
        self.last_error: str | None = None
        # Redis's run_id as last seen: it changes when the server restarts. Checkpoints write only the
        # series that changed, so after a restart that lost the data every other series would be
        # missing from Redis for good: the owner must write all of them again (see server_restarted).
        self._run_id: str | None = None
        self.server_restarted = False
        if url is None:
            log.warning("no Redis configured: model state is kept in process memory and lost on restart")
        else:
            import redis

            self._redis = redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)

    def _key(self, series: str) -> str:
        return f"{self.prefix}series:{series}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}series"

    def _mark(self, ok: bool, err: Exception | None = None) -> None:
        if ok and not self.healthy and self._redis is not None:
            log.warning("Redis is back: checkpoints resume")
        if not ok and self.healthy:
            log.error("Redis unavailable (%s): detection continues on in-memory state; checkpoints will resume", err)
        self.healthy = ok
        self.last_error = None if ok else str(err)

    def load_many(self, series: Iterable[str]) -> dict[str, SeriesState]:
        """States known for ``series`` (missing ones are absent from the result)."""
        series = list(series)
        out: dict[str, SeriesState] = {}
        if self._redis is not None:
            import redis

            try:
                pipe = self._redis.pipeline(transaction=False)
                for s in series:
                    pipe.hgetall(self._key(s))
                for s, fields in zip(series, pipe.execute()):
                    if fields:
                        out[s] = SeriesState.from_fields(s, fields)
                self._mark(True)
            except redis.RedisError as exc:
                self._mark(False, exc)
        with self._lock:
            backlog = {s: self._memory[s] for s in series if s in self._memory}
        for s, fields in backlog.items():  # memory holds checkpoints Redis missed during an outage: newer wins
            mem = SeriesState.from_fields(s, fields)
            if s not in out or mem.last_window >= out[s].last_window:
                out[s] = mem
        return out

    def checkpoint(self, states: Iterable[SeriesState]) -> bool:
        """Write ``states``; returns True when they (and any backlog) reached Redis."""
        return self.checkpoint_fields((st.series, st.to_fields()) for st in states)

    def checkpoint_fields(self, records: Iterable[tuple[str, dict[str, str]]], pause_s: float = 0.0,
                          hurry: threading.Event | None = None) -> bool:
        """Write ``(series, hash fields)`` pairs (what :meth:`SeriesState.to_fields` gives, or an
        equivalent built in bulk); returns True when they (and any backlog) reached Redis.

        ``records`` may be a lazy iterable: it is consumed a chunk at a time, each chunk written
        before the next is built, with ``pause_s`` between chunks so a background writer spreads
        its CPU instead of competing with the consume loop in one burst (``hurry``, once set,
        ends the pauses: someone is waiting for this write). A record leaves the
        backlog only once Redis acknowledged it and no newer record of the same series arrived
        meanwhile; if Redis fails, the rest of ``records`` goes to the backlog."""
        it = iter(records)
        if self._redis is None:
            with self._lock:
                self._memory.update(it)
            return False
        import redis

        with self._lock:
            backlog = list(self._memory.items())
        try:
            self._check_run_id()
            for chunk in _chunks(backlog, WRITE_CHUNK):  # an outage's backlog first, unpaced
                self._write_chunk(chunk)
            while True:
                chunk = list(islice(it, WRITE_CHUNK))
                if not chunk:
                    break
                with self._lock:
                    self._memory.update(chunk)
                self._write_chunk(chunk)
                if pause_s > 0:
                    (hurry.wait if hurry is not None else time.sleep)(pause_s)
            self._mark(True)
            return True
        except redis.RedisError as exc:
            with self._lock:
                self._memory.update(it)  # the rest of this checkpoint waits for Redis with the backlog
            self._mark(False, exc)
            return False

    def _check_run_id(self) -> None:
        """Note a Redis restart (a new run_id) in ``server_restarted``, for the owner to act on."""
        run_id = self._redis.info("server").get("run_id")
        if self._run_id is not None and run_id != self._run_id:
            log.warning("Redis restarted (run_id %s -> %s): every series' state is written again", self._run_id, run_id)
            self.server_restarted = True
        self._run_id = run_id

    def _write_chunk(self, chunk: list[tuple[str, dict[str, str]]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for s, fields in chunk:
            pipe.hset(self._key(s), mapping=fields)
        pipe.sadd(self._index, *(s for s, _ in chunk))  # one command for the index, not one per series
        pipe.execute()
        with self._lock:
            for s, fields in chunk:
                if self._memory.get(s) is fields:
                    del self._memory[s]

    # -- inspection (patrol models ...) -----------------------------------------------------
    def list_series(self, pattern: str = "*") -> list[str]:
        import fnmatch

        with self._lock:
            keys = set(self._memory)
        if self._redis is not None:
            keys |= {k.decode() for k in self._redis.sscan_iter(self._index)}
        return sorted(k for k in keys if fnmatch.fnmatchcase(k, pattern))

    def get(self, series: str) -> SeriesState | None:
        return self.load_many([series]).get(series)

    def raw_size(self, series: str) -> int:
        """Bytes the series' state takes in Redis (field names + values)."""
        with self._lock:
            fields = self._memory.get(series)
        if fields is None and self._redis is not None:
            fields = {k.decode(): v.decode() for k, v in self._redis.hgetall(self._key(series)).items()}
        return sum(len(k) + len(v) for k, v in (fields or {}).items())

    def reset(self, series: str) -> bool:
        with self._lock:
            existed = self._memory.pop(series, None) is not None
        if self._redis is not None:
            existed = bool(self._redis.delete(self._key(series))) or existed
            self._redis.srem(self._index, series)
        return existed


def _chunks(items: list, n: int) -> Iterator[list]:
    """Slices of a list (``islice`` does the same for the lazy records)."""
    for i in range(0, len(items), n):
        yield items[i:i + n]
