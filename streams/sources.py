"""How far every pre-aggregation partition has got, read from what the preagg workers commit.

The detect worker merges the shares of a (series, window) from several pre-aggregation
partitions (``models.partials``); it must know when no share of a window can still come. The
pre-aggregation worker commits, per logs partition and only after the broker acknowledged the
points, the start of its oldest open window (the ``<group>.state-open`` side group, see
``streams.preagg_job``): every window before it was published. From it:

* a logs partition with a window open holds back the windows from that one on, also across a
  pause of its producer (its open windows wait for event time);
* a partition with nothing open, or with no lines at all, holds back nothing: it has no share to
  send until new lines arrive. A share it sends later for a window already scored is a late share,
  dead-lettered (``code="late_partial"``), never lost;
* a partition with lines but no progress committed yet (its worker is starting) holds back all.

What this says covers the shares acknowledged before it was read; the detect worker knows it has
consumed all of those on a metrics partition when it reads back a fence it produced there after
the read (``streams.detect_job``), not from the partition's end offset: Tansu's ListOffsets
under-reports it.
"""

from __future__ import annotations

import logging
import math
import time

from confluent_kafka import Consumer, TopicPartition

from .observability import log_event
from .preagg_job import OPEN_NONE

log = logging.getLogger("patrol.detect.sources")


class SourceProgress:
    """Reads the pre-aggregation group's progress over the logs topic (two metadata requests)."""

    def __init__(self, conf: dict, logs_topic: str, preagg_group: str, timeout: float = 10.0):
        # Never subscribed: this client only reads the side group's committed offsets.
        self.state = Consumer({**conf, "enable.auto.commit": False, "group.id": f"{preagg_group}.state-open"})
        self.logs_topic = logs_topic
        self.group = preagg_group
        self.timeout = timeout
        self._warned: dict[int, float] = {}
        self._tps: list[TopicPartition] = []
        self._listed_at = -math.inf

    def closed_before(self) -> float:
        """Windows ending at or before this are complete in every logs partition (``inf``: none open)."""
        tps = self._partitions()
        if not tps:
            return math.inf  # no logs topic: nothing upstream to wait for
        states = self.state.committed(tps, timeout=self.timeout)
        before = math.inf
        for tp, st in zip(tps, states):
            if st.offset < 0:  # no progress committed: wait for it, unless the partition is empty
                lo, hi = self.state.get_watermark_offsets(tp, timeout=self.timeout, cached=False)
                if hi > lo:    # (ListOffsets under-reports the end on Tansu, but not down to empty)
                    self._warn_waiting(tp.partition, hi)
                    before = -math.inf
                continue
            if st.offset != OPEN_NONE:  # a window is open: it and later ones may still get lines
                before = min(before, float(st.offset))
        return before

    def _partitions(self) -> list[TopicPartition]:
        """The logs topic's partitions, from metadata read at most every 10 s."""
        now = time.monotonic()
        if now - self._listed_at >= 10:
            md = self.state.list_topics(self.logs_topic, timeout=self.timeout).topics.get(self.logs_topic)
            ok = md is not None and md.error is None
            self._tps = [TopicPartition(self.logs_topic, p) for p in sorted(md.partitions)] if ok else []
            self._listed_at = now if self._tps else -math.inf  # a missing topic: asked again next time
        return self._tps

    def _warn_waiting(self, partition: int, end: int) -> None:
        now = time.monotonic()
        if now - self._warned.get(partition, -math.inf) >= 60:
            self._warned[partition] = now
            log_event(log, "waiting for pre-aggregation: a logs partition has lines but no window progress "
                      "committed by its group yet", logging.WARNING, group=self.group, topic=self.logs_topic,
                      partition=partition, end_offset=end)

    def close(self) -> None:
        self.state.close()
