"""Complete the points of several pre-aggregation partitions before detection.

Pre-aggregation windows are per Kafka partition of the logs, so a point is that partition's share of
its series in the window: ``global`` series always (every partition sees some traffic), and a
service's series as well whenever its lines are not keyed by service (Fluent Bit and Vector send
them without a key, spread over the partitions). The detect worker therefore holds every point,
keyed by (series, window), until all pre-aggregation partitions have closed that window, then
merges the shares exactly (:func:`preagg.series.rollup`) and scores the merged point once.

When a window is complete is not guessed here: the caller passes a :class:`Ready` per metrics
partition, read from what the pre-aggregation workers committed (``streams.sources``). Because the
merge waits for that, its result does not depend on the order or the timing in which the shares
arrive, and two identical runs score identical points.

A share arriving after its series' window was merged and scored is a *late share*: :meth:`add`
returns it to the caller, which sends it to the dead-letter topic with ``code="late_partial"`` and
logs it (it is never folded in silently, nor silently dropped). Held points' offsets are not
committed, so a crash replays them; a replayed share of an already scored window (after a
restart) is merged again and then recognised as a duplicate by the series pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from patrol.preagg.series import rollup
from patrol.records import MetricPoint


def is_partial(p: MetricPoint) -> bool:
    """A ``global`` point is always one partition's share (other series are when logs are unkeyed)."""
    return p.dims.get("scope") == "global"


class Ready(NamedTuple):
    """Windows ending at or before ``before`` are complete for points at offsets below ``offset``.

    ``before`` comes from the pre-aggregation partitions' committed progress and ``offset`` from
    the metrics partition's end read *after* it, so every share of those windows is below it."""

    before: float
    offset: int


@dataclass(slots=True)
class _Held:
    shares: list  # (point, metrics partition, offset, source) in arrival order
    max_offset: int


class PartialMerger:
    """Hold points per (series, window) until their window is complete, then merge them."""

    def __init__(self):
        # metrics partition -> window start -> series -> held shares
        self.held: dict[int, dict[float, dict[str, _Held]]] = {}
        # series -> newest window released for scoring, in this process (tells late shares apart)
        self.released: dict[str, float] = {}
        self.n_held = 0
        self.duplicates = 0  # shares held twice (a replay upstream), merged once

    def add(self, p: MetricPoint, partition: int, offset: int, source: Any = None) -> bool:
        """Hold ``p`` (read at ``offset`` of metrics ``partition``; ``source`` is handed back with
        it). Returns False, holding nothing, when ``p`` is a late share: its series' window was
        already released."""
        ws = p.window_start.timestamp()
        if ws <= self.released.get(p.series, float("-inf")):
            return False
        by_series = self.held.setdefault(partition, {}).setdefault(ws, {})
        h = by_series.get(p.series)
        if h is None:
            by_series[p.series] = _Held([(p, partition, offset, source)], offset)
        else:
            h.shares.append((p, partition, offset, source))
            h.max_offset = max(h.max_offset, offset)
        self.n_held += 1
        return True

    def release(self, ready: dict[int, Ready]) -> list[tuple[MetricPoint, list]]:
        """Merged points of the complete windows, as ``(point, sources of its shares)``, window by
        window (oldest first) and by series within a window: an order that depends on the data only.

        A window of metrics partition ``m`` is complete when it ends at or before
        ``ready[m].before`` and every share held for it was read below ``ready[m].offset``."""
        out: list[tuple[MetricPoint, list]] = []
        for m, windows in self.held.items():
            r = ready.get(m)
            if r is None:
                continue
            for ws in sorted(windows):
                series = windows[ws]
                span = next(iter(series.values())).shares[0][0].window_end.timestamp() - ws
                if ws + span > r.before:
                    break  # later windows are not complete either
                done = [k for k, h in series.items() if h.max_offset < r.offset]
                out.extend(self._merge(ws, [series.pop(k) for k in done]))
                if series:
                    break  # keep window order per series: a later window waits for this one
                del windows[ws]
        out.sort(key=lambda e: (e[0].window_start, e[0].series))
        return out

    def _merge(self, ws: float, held: list[_Held]) -> list[tuple[MetricPoint, list]]:
        out = []
        by_dims: dict[tuple, list[_Held]] = {}
        for h in held:
            self.n_held -= len(h.shares)
            p = h.shares[0][0]
            self.released[p.series] = max(self.released.get(p.series, float("-inf")), ws)
            by_dims.setdefault(tuple(sorted(p.dims.items())), []).append(h)
        for group in by_dims.values():
            if all(len(h.shares) == 1 for h in group):  # one share each: complete as they are
                out.extend((h.shares[0][0], [h.shares[0][3]]) for h in group)
                continue
            # All of the dims' metrics go to rollup together (p50/p90 come from the p99 sketch);
            # shares in partition order so that float sums do not depend on arrival order.
            shares = sorted((s for h in group for s in h.shares),
                            key=lambda s: (s[0].stats.get("partition", -1.0), s[0].metric, s[2]))
            n = len(shares)
            shares = _one_per_source(shares)
            self.duplicates += n - len(shares)
            sources: dict[str, list] = {}
            for p, _m, _off, src in shares:
                sources.setdefault(p.series, []).append(src)
            for merged in rollup([s[0] for s in shares], merge_partitions=True):
                out.append((merged, sources.get(merged.series, [])))
        return out

    def min_offsets(self) -> dict[int, int]:
        """Per metrics partition, the oldest offset still held (commits must stay below it)."""
        low: dict[int, int] = {}
        for m, windows in self.held.items():
            offs = [s[2] for series in windows.values() for h in series.values() for s in h.shares]
            if offs:
                low[m] = min(offs)
        return low

    def drop_partitions(self, partitions: set[int], series: set[str] = frozenset()) -> None:
        """Forget the points held from revoked metrics ``partitions`` (uncommitted: their next owner
        replays them) and what was released for their ``series``."""
        for m in partitions:
            for windows in self.held.pop(m, {}).values():
                self.n_held -= sum(len(h.shares) for h in windows.values())
        for k in series:
            self.released.pop(k, None)


def _one_per_source(shares: list) -> list:
    """A share repeated by a replay upstream (same series, window and source partition) counts once."""
    seen, out = set(), []
    for s in shares:
        key = (s[0].series, s[0].stats.get("partition"))
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out
