"""Complete partition-partial series before detection.

The pre-aggregation stage sees one Kafka partition of the logs per worker, so its ``global``
series (dims ``scope=global``) are partial per partition; everything keyed by service is complete.
The detect worker holds partial points until event time has moved ``hold_windows`` windows past
them (every pre-aggregation partition has then closed that window), merges them exactly with
:func:`preagg.series.rollup` and scores the merged point. Held points' offsets are not committed,
so a crash replays them.
"""

from __future__ import annotations

from preagg.series import rollup
from records import MetricPoint


def is_partial(p: MetricPoint) -> bool:
    return p.dims.get("scope") == "global"


class PartialMerger:
    """Hold partial points per window; release merged windows once event time has passed them."""

    def __init__(self, hold_windows: int = 2):
        self.hold_windows = hold_windows
        self.held: dict[float, list[tuple[MetricPoint, int, int]]] = {}
        self.newest = float("-inf")

    def add(self, p: MetricPoint, partition: int, offset: int) -> None:
        ws = p.window_start.timestamp()
        self.held.setdefault(ws, []).append((p, partition, offset))
        self.newest = max(self.newest, ws)

    def release(self, force: bool = False) -> list[MetricPoint]:
        """Merged points of every window old enough (all of them with ``force``), oldest first."""
        out = []
        for ws in sorted(self.held):
            entries = self.held[ws]
            span = entries[0][0].window_end.timestamp() - ws
            if not force and ws + self.hold_windows * span > self.newest:
                break
            del self.held[ws]
            out.extend(sorted(rollup([p for p, _, _ in entries], merge_partitions=True),
                              key=lambda m: m.series))
        return out

    def min_offsets(self) -> dict[int, int]:
        """Per source partition, the oldest offset still held (commits must stay below it)."""
        low: dict[int, int] = {}
        for entries in self.held.values():
            for _p, part, off in entries:
                low[part] = min(low.get(part, off), off)
        return low

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget points from revoked partitions (uncommitted, so their next owner replays them)."""
        for ws in list(self.held):
            self.held[ws] = [e for e in self.held[ws] if e[1] not in partitions]
            if not self.held[ws]:
                del self.held[ws]
