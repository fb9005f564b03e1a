"""A revoke (and the shutdown, which revokes everything) drops a partition's series in linear time.

Issue #13: with ~88k series of one service, ``SeriesPool.drop`` under ``_on_revoke`` spent minutes
in ``list.remove`` (each call compared whole ``Series`` dataclasses with ``==``). The cost is checked
by counting those comparisons, not by timing (``benchmarks.detect_revoke`` measures the seconds).
"""

from datetime import datetime, timedelta, timezone

from confluent_kafka import TopicPartition

from patrol.models import pool as pool_mod
from patrol.models.store import StateStore
from patrol.streams.config import load_settings
from patrol.streams.detect_job import DetectWorker
from patrol.records import MetricPoint

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)


def points(service: str, n: int, window: int = 0) -> list[MetricPoint]:
    ws = T0 + timedelta(minutes=window)
    return [MetricPoint.make("requests", {"service": service, "template": f"/r{i}"}, ws, ws + timedelta(minutes=1),
                             100.0 + i % 7) for i in range(n)]


def offline_worker() -> DetectWorker:
    # Kafka clients connect lazily: nothing here needs a broker (nothing is produced or committed).
    s = load_settings(overrides={"kafka.bootstrap_servers": "127.0.0.1:1"})
    return DetectWorker(s, store=StateStore(None))


def test_revoke_drops_a_partitions_series_without_scanning_the_service(monkeypatch):
    w = offline_worker()
    try:
        big, small = points("big", 3000), points("small", 50)
        w.pool.ensure(big + small)
        w.pool.process(big + small, ensure=False)
        w.partition_of.update({p.series: 0 for p in big} | {p.series: 1 for p in small})
        rows_before = {id(g): len(g.free) for g in w.pool.groups.values()}

        compared = []
        orig_eq = pool_mod.Series.__eq__
        monkeypatch.setattr(pool_mod.Series, "__eq__", lambda a, b: compared.append(1) or orig_eq(a, b))
        w._on_revoke(w.consumer, [TopicPartition(w.s.topics.metrics, 0)])

        assert not compared  # the old drop made ~n^2/2 comparisons (4.5M here)
        assert set(w.pool.series) == {p.series for p in small}
        assert "big" not in w.pool.by_service and len(w.pool.by_service["small"]) == 50
        assert set(w.partition_of) == {p.series for p in small}
        g = next(iter(w.pool.groups.values()))
        assert len(g.free) == rows_before[id(g)] + 3000  # rows recycled
        # the survivors still score, and a dropped series comes back fresh on its next point
        outs, _, rej = w.pool.process(points("small", 50, 1) + points("big", 5, 1))
        assert len(outs) == 55 and not rej
    finally:
        w._writer.shutdown(wait=True)
