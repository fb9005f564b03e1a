"""How far every pre-aggregation partition has got, read from what the preagg workers commit.

The detect worker merges the shares of a (series, window) from several pre-aggregation
partitions (``models.partials``); it must know when no share of a window can still come. The
pre-aggregation worker already commits, per logs partition and after the broker acknowledged the
points, ``closed_before`` (windows ending before it were published: the ``<group>.state-t`` side
group, see ``streams.preagg_job``) and the offset below which every line is in a published window.
From those:

* a logs partition with lines not yet in a published window holds back windows ending after its
  ``closed_before`` (also across a producer pause: its open windows wait for event time);
* a partition caught up (committed offset = end of the partition, nothing open) or empty holds
  back nothing: it has no share to send until new lines arrive. A share it sends later for a
  window already scored is a late share, dead-lettered (``code="late_partial"``), never lost.

The metrics partitions' ends are read *after* the commits: every share of a window before
``closed_before`` was acknowledged before the commit, so it sits below those ends. The result, a
:class:`models.partials.Ready` per metrics partition, is exact whatever the arrival order and
timing: two identical runs merge identical points.
"""

from __future__ import annotations

import logging
import math
import time

from confluent_kafka import Consumer, TopicPartition

from models.partials import Ready

from .observability import log_event
from .preagg_job import decode_state

log = logging.getLogger("patrol.detect.sources")


class SourceProgress:
    """Reads the pre-aggregation group's progress over the logs topic (a few metadata requests)."""

    def __init__(self, conf: dict, logs_topic: str, preagg_group: str, timeout: float = 10.0):
        side = {**conf, "enable.auto.commit": False}
        # Never subscribed: these clients only read the groups' committed offsets.
        self.offsets = Consumer({**side, "group.id": preagg_group})
        self.state = Consumer({**side, "group.id": f"{preagg_group}.state-t"})
        self.logs_topic = logs_topic
        self.group = preagg_group
        self.timeout = timeout
        self._warned: dict[int, float] = {}

    def closed_before(self) -> float:
        """Windows ending at or before this are complete in every logs partition (``inf``: all idle)."""
        md = self.offsets.list_topics(self.logs_topic, timeout=self.timeout).topics.get(self.logs_topic)
        if md is None or md.error is not None or not md.partitions:
            return math.inf  # no logs topic: nothing upstream to wait for
        tps = [TopicPartition(self.logs_topic, p) for p in sorted(md.partitions)]
        done = self.offsets.committed(tps, timeout=self.timeout)
        states = self.state.committed(tps, timeout=self.timeout)
        before = math.inf
        for tp, off, st in zip(tps, done, states):
            lo, hi = self.offsets.get_watermark_offsets(tp, timeout=self.timeout, cached=False)
            if hi <= lo or (off.offset >= 0 and off.offset >= hi):
                continue  # empty, or every line in a published window: nothing to wait for
            cb = decode_state(st.offset)[0] if st.offset >= 0 else -math.inf
            if cb == -math.inf:
                self._warn_waiting(tp.partition, hi)
            before = min(before, cb)
        return before

    def ready(self, consumer: Consumer, metrics_topic: str, partitions: list[int]) -> dict[int, Ready]:
        """:class:`Ready` for each of ``partitions`` of the metrics topic (progress first, ends after)."""
        before = self.closed_before()
        out = {}
        for m in partitions:
            _lo, hi = consumer.get_watermark_offsets(TopicPartition(metrics_topic, m), timeout=self.timeout,
                                                     cached=False)
            out[m] = Ready(before, hi)
        return out

    def _warn_waiting(self, partition: int, end: int) -> None:
        now = time.monotonic()
        if now - self._warned.get(partition, -math.inf) >= 60:
            self._warned[partition] = now
            log_event(log, "waiting for pre-aggregation: a logs partition has lines but no window progress "
                      "committed by its group", logging.WARNING, group=self.group, topic=self.logs_topic,
                      partition=partition, end_offset=end)

    def close(self) -> None:
        self.offsets.close()
        self.state.close()
