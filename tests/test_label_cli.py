"""``patrol label ...`` through the real console script against a real (Tansu) broker.

Each test gets its own topic names on the session broker; anomalies and metric points are produced
here with confluent-kafka (key = series key), as the detect stage would.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from conftest import run_patrol
from test_ingest import run_in_pty
from patrol.models.labels import LabelBook
from patrol.records import Anomaly, Incident, Label, MetricPoint, decode, record_id, series_key
from patrol.streams.topics import ensure_topic

NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)


def mins(m: float) -> datetime:
    return NOW + timedelta(minutes=m)


def make_anomaly(metric: str, service: str, minute: float, detectors: list[str], severity: str = "warning",
                 incident: str | None = None, observed: float = 0.4, base: datetime | None = None) -> Anomaly:
    dims = {"service": service}
    key = series_key(metric, dims)
    ws = (base or NOW) + timedelta(minutes=minute)
    return Anomaly(id=record_id(key, ws.isoformat(), 1), series=key, metric=metric, dims=dims, window_start=ws,
                   window_end=ws + timedelta(minutes=1), observed=observed, expected=0.02, lower=0.0, upper=0.05,
                   score=0.995, severity=severity, direction="up", detectors=detectors, incident_id=incident,
                   incident_event="opened" if incident else None,
                   features={"deviation": 7.6, "minute": int(ws.timestamp() // 60) % 1440, "direction": "up",
                             "fired": detectors})


class Topics:
    """A private topic set on the session broker and the env that points `patrol` at it."""

    def __init__(self, bootstrap: str):
        tag = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.anomalies, self.labels, self.metrics = f"an-{tag}", f"lb-{tag}", f"mp-{tag}"
        conf = {"bootstrap.servers": bootstrap}
        ensure_topic(conf, self.anomalies, 3)
        ensure_topic(conf, self.labels, 1, {"cleanup.policy": "compact"})
        ensure_topic(conf, self.metrics, 2)
        self.env = {"PATROL_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "PATROL_TOPICS__ANOMALIES": self.anomalies,
                    "PATROL_TOPICS__LABELS": self.labels, "PATROL_TOPICS__METRICS": self.metrics,
                    "PATROL_LABEL_AUTHOR": "ann"}

    def produce(self, topic: str, records) -> None:
        p = Producer({"bootstrap.servers": self.bootstrap})
        for r in records:
            if isinstance(r, bytes):
                p.produce(topic, key=b"junk", value=r)
                continue
            # incidents keyed by service (as the detect stage does); metric points by service, like
            # the detect-stage tests, anomalies by series: the CLI must not depend on the keying
            key = r.service if isinstance(r, Incident) else r.dims["service"] if isinstance(r, MetricPoint) else r.series
            if isinstance(r, MetricPoint):
                # no explicit timestamp: produced "now", long after their windows, like a backfill
                p.produce(topic, key=key.encode(), value=r.to_bytes())
                continue
            ts = r.last if isinstance(r, Incident) else r.window_end
            p.produce(topic, key=key.encode(), value=r.to_bytes(), timestamp=int(ts.timestamp() * 1000))
        assert p.flush(10) == 0

    def labels_on_topic(self) -> list[tuple[bytes, Label]]:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": uuid.uuid4().hex,
                      "enable.partition.eof": True, "enable.auto.commit": False})
        c.assign([TopicPartition(self.labels, 0, 0)])
        out = []
        try:
            while True:
                m = c.poll(5)
                assert m is not None, "labels topic read timed out"
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF
                    return out
                out.append((m.key(), decode(m.value(), expect=Label)))
        finally:
            c.close()

    def patrol(self, *args: str, check: bool = True, **env):
        return run_patrol("label", *args, env={**self.env, **env}, check=check)

    def json(self, *args: str, **env):
        return json.loads(self.patrol(*args, **env).stdout)


@pytest.fixture
def seeded(kafka):
    """Six anomalies on three series plus one whose id shares a 2-char prefix with another, and the
    metric points of the web error-ratio series around them."""
    t = Topics(kafka.bootstrap)
    anomalies = [
        make_anomaly("error_ratio", "web", -90, ["spike"], "critical"),
        make_anomaly("error_ratio", "web", -30, ["spike", "seasonal"]),
        make_anomaly("error_ratio", "web", -10, ["seasonal"], incident="inc-web-1"),
        make_anomaly("requests", "api", -200, ["changepoint"], "info"),
        make_anomaly("requests", "api", -20, ["changepoint"], "info"),
        make_anomaly("error_ratio", "api", -5, ["spike"], "critical", incident="inc-api-7"),
    ]
    # A twin whose id shares its first two hex chars with an existing one, for the ambiguous-prefix test.
    prefixes = {a.id[:2] for a in anomalies}
    k = 0
    while True:
        twin = make_anomaly("latency", "batch", -60 - k / 60, ["spike"])
        if twin.id[:2] in prefixes:
            break
        k += 1
    anomalies.append(twin)
    # The anomaly topic also carries incident records (latest event wins) and, here, one broken record.
    opened = Incident(id="inc-web-1", event="opened", service="web", opened=mins(-10), last=mins(-10),
                      severity="warning", series=[anomalies[2].series], anomalies=1)
    resolved = opened.model_copy(update={"event": "resolved", "last": mins(-4)})
    t.produce(t.anomalies, [*anomalies, opened, b"not a record", resolved])
    web = anomalies[0].series
    flagged = {a.window_start: a.observed for a in anomalies if a.series == web}
    points = [MetricPoint.make("error_ratio", {"service": "web"}, mins(m), mins(m + 1),
                               flagged.get(mins(m), 0.02 + 0.001 * (m % 5))) for m in range(-150, 0)]
    t.produce(t.metrics, points)
    t.all = anomalies
    t.by_id = {a.id: a for a in anomalies}
    return t


def test_list_filters_table_and_json(seeded):
    t = seeded
    rows = t.json("list", "--json")
    short_of = lambda a: next(r["short_id"] for r in rows if r["id"] == a.id)  # noqa: E731
    assert [r["id"] for r in rows] == [a.id for a in sorted(t.all, key=lambda a: a.window_start, reverse=True)]
    assert all(r["label"] is None and r["id"].startswith(r["short_id"]) for r in rows)
    ids = lambda *args: {r["id"] for r in t.json("list", "--json", *args)}  # noqa: E731
    assert ids("--service", "web") == {a.id for a in t.all if a.dims["service"] == "web"}
    assert ids("--metric", "error_ratio", "--severity", "critical") == {t.all[0].id, t.all[5].id}
    assert ids("--since", "2h") == {a.id for a in t.all if a.window_start >= mins(-120)}
    assert ids("--until", mins(-60).isoformat(), "--since", "1d") == {t.all[0].id, t.all[3].id, t.all[6].id}
    assert ids("--detector", "seasonal") == {t.all[1].id, t.all[2].id}

    # Piped (as here), `list` prints TSV: a header, one line per anomaly, full values; counts on stderr.
    listing = t.patrol("list", "--service", "web", "--limit", "2")
    header, *lines = listing.stdout.splitlines()
    cols = header.split("\t")
    got = [dict(zip(cols, line.split("\t"))) for line in lines]
    assert [r["id"] for r in got] == [t.all[2].id, t.all[1].id]
    assert all(len(line.split("\t")) == len(cols) for line in lines)
    assert got[0]["short_id"] == short_of(t.all[2]) and got[0]["series"] == "error_ratio{service=web}"
    assert got[0]["window_start"] == t.all[2].window_start.isoformat() and got[0]["incident_id"] == "inc-web-1"
    assert float(got[1]["observed"]) == t.all[1].observed and got[1]["detectors"] == "spike,seasonal"
    assert got[1]["label"] == ""
    assert "2 of 3 matching anomalies" in listing.stderr and "2 of 3" not in listing.stdout
    assert "skipped 1 undecodable records" in listing.stderr and "not JSON" in listing.stderr
    # --format table into a pipe renders at the table's own width, nothing folded or cut at 80 columns
    wide = t.patrol("list", "--format", "table", "--limit", "4", COLUMNS="80").stdout
    assert "4 of 7 matching anomalies" in wide and max(len(line) for line in wide.splitlines()) > 80
    row = next(line for line in wide.splitlines() if short_of(t.all[1]) in line)
    assert "error_ratio{service=web}" in row and "spike,seasonal" in row and "warning" in row
    assert json.loads(t.patrol("list", "--format", "json", "-n", "1").stdout)[0]["id"] == t.all[5].id
    assert t.patrol("list", "--format", "tsv", "--json", check=False).returncode == 2
    incidents = {i["incident_id"]: i for i in t.json("list", "--incidents", "--json")}
    assert set(incidents) == {"inc-web-1", "inc-api-7"}
    assert incidents["inc-web-1"]["state"] == "resolved" and incidents["inc-web-1"]["last"] == mins(-4).isoformat()
    assert incidents["inc-api-7"]["state"] == "opened"  # no incident record: from its anomaly
    inc_tsv = t.patrol("list", "--incidents").stdout.splitlines()
    assert inc_tsv[0].split("\t")[:4] == ["last", "incident_id", "service", "state"]
    assert [line.split("\t")[1] for line in inc_tsv[1:]] == ["inc-web-1", "inc-api-7"]  # most recent first
    assert inc_tsv[1].split("\t")[3] == "resolved" and inc_tsv[1].split("\t")[8] == "unlabeled=1"

    t.patrol("mark", t.all[1].id[:10], "true")
    assert ids("--unlabeled") == set(t.by_id) - {t.all[1].id}
    bad = t.patrol("list", "--since", "yesterday-ish", check=False)
    assert bad.returncode == 2 and "cannot read time" in bad.stderr


def test_show_draws_terminal_chart_and_png(seeded, tmp_path):
    import matplotlib.image as mpimg

    t = seeded
    focus = t.all[1]
    png = tmp_path / "a.png"
    r = t.patrol("show", focus.id[:9], "--context", "45", "--png", str(png), "--png-size", "800x300")
    assert focus.series in r.stdout and focus.id in r.stdout
    assert "minutes from anomaly" in r.stdout and "expected" in r.stdout
    # window starts in [-75, +16] min: points -75..-1 (75) and the flagged windows at -30 and -10
    assert "75 metric points and 2 flagged windows" in r.stdout
    # an older anomaly: its window ends long before the points' message timestamps (backfill)
    r = t.patrol("show", t.all[0].id, "--context", "30", "--no-chart")
    assert "62 metric points and 1 flagged windows" in r.stdout and "minutes from anomaly" not in r.stdout
    raw = png.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 5000
    img = mpimg.imread(png)
    assert img.shape[:2] == (300, 800)
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_mark_bulk_undo_export_stats(seeded, tmp_path):
    t = seeded
    a = t.all
    t.patrol("mark", a[5].id, "true", "--note", "real outage")
    t.patrol("mark", a[3].id[:12], "false", "--author", "bob")
    dry = t.patrol("mark-all", "false", "--service", "web", "--metric", "error_ratio", "--since", "1h", "--dry-run")
    assert "would mark 2 anomalies false" in dry.stdout
    bulk = t.patrol("mark-all", "false", "--service", "web", "--metric", "error_ratio", "--since", "1h")
    assert "marked 2 anomalies false" in bulk.stdout  # the -30 and -10 min ones; -90 is older than 1h
    t.patrol("mark", a[0].id, "ignore")
    t.patrol("mark", a[1].id, "true")                 # relabel: false -> true

    on_topic = t.labels_on_topic()
    assert len(on_topic) == 6
    assert all(key.decode() == lb.anomaly_id for key, lb in on_topic)  # keyed by anomaly id (compaction)
    # the detect stage routes and retrains from what the label carries: the anomaly's series/metric/features
    for _, lb in on_topic:
        src = t.by_id[lb.anomaly_id]
        assert (lb.series, lb.metric, lb.features) == (src.series, src.metric, src.features) and lb.features
    expected = {a[5].id: "true", a[3].id: "false", a[1].id: "true", a[2].id: "false", a[0].id: "ignore"}
    assert {aid: lb.verdict.value for aid, lb in LabelBook.of(lb for _, lb in on_topic).effective().items()} == expected

    # undo (ann's last label: a[1] true) restores the verdict before it; second undo: a[0] had none -> retracted
    u1 = t.patrol("undo").stdout
    assert f"anomaly {a[1].id}: true -> false" in u1
    u2 = t.patrol("undo").stdout
    assert f"anomaly {a[0].id}: ignore -> unlabeled (retracted)" in u2
    expected[a[1].id] = "false"
    del expected[a[0].id]
    # what a consumer of the compacted topic sees: the latest label per anomaly, retraction = ignore
    on_topic = t.labels_on_topic()
    latest = {lb.anomaly_id: lb.verdict.value for _, lb in on_topic}
    assert latest == {**expected, a[0].id: "ignore"}
    last = on_topic[-1][1]
    assert last.anomaly_id == a[0].id and last.verdict.value == "ignore" and last.note.startswith("[undo ")
    assert last.series == a[0].series and last.features == a[0].features  # undo labels are routable too
    bob = t.patrol("undo", "--author", "nobody", check=False)
    assert bob.returncode == 2 and "no label by nobody" in bob.stderr
    # bob's label is his own: undo --author bob retracts it and leaves ann's labels alone
    u3 = t.patrol("undo", "--author", "bob").stdout
    assert f"anomaly {a[3].id}: false -> unlabeled (retracted)" in u3 and "undid label by bob" in u3
    del expected[a[3].id]

    js = json.loads(t.patrol("export", "--format", "json").stdout)
    assert {r["anomaly_id"]: r["verdict"] for r in js} == expected
    row = next(r for r in js if r["anomaly_id"] == a[5].id)
    assert row["note"] == "real outage" and row["author"] == "ann" and row["series"] == a[5].series
    assert row["observed"] == a[5].observed and row["detectors"] == "spike"
    out = tmp_path / "labels.csv"
    t.patrol("export", "--format", "csv", "--out", str(out))
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {r["anomaly_id"]: r["verdict"] for r in rows} == expected
    assert {r["anomaly_id"]: r["note"] for r in rows}[a[5].id] == "real outage"

    # precision computed here from what we labeled: per detector (an anomaly counts for each detector)
    def precision(keys):
        tp = sum(1 for aid, v in expected.items() if keys(t.by_id[aid]) and v == "true")
        fp = sum(1 for aid, v in expected.items() if keys(t.by_id[aid]) and v == "false")
        return tp / (tp + fp)

    st = t.json("stats", "--json")
    assert st["detector"]["spike"]["precision"] == pytest.approx(precision(lambda x: "spike" in x.detectors))
    assert st["detector"]["seasonal"]["precision"] == pytest.approx(precision(lambda x: "seasonal" in x.detectors))
    assert st["service"]["api"]["precision"] == pytest.approx(precision(lambda x: x.dims["service"] == "api"))
    assert st["metric"]["error_ratio"]["precision"] == pytest.approx(precision(lambda x: x.metric == "error_ratio"))
    assert st["all"]["all"] == {"labeled": 3, "true": 1, "false": 2, "ignore": 0, "precision": pytest.approx(1 / 3)}
    assert "changepoint" not in st["detector"]  # bob's only label was retracted
    table = t.patrol("stats").stdout
    assert "seasonal" in table and "0.333" in table

    # the next undo takes back ann's whole mark-all (a[1], a[2]) in one go
    u4 = t.patrol("undo").stdout
    assert "undid 2 labels (one mark-all)" in u4
    assert f"anomaly {a[2].id}: false -> unlabeled (retracted)" in u4
    assert {r["id"] for r in t.json("list", "--json", "--labeled")} == {a[5].id}


def test_unknown_and_ambiguous_ids_are_errors(seeded):
    t = seeded
    r = t.patrol("mark", "ffffffffffffffffffffffff", "true", check=False)
    assert r.returncode == 2 and "no anomaly with id" in r.stderr and t.anomalies in r.stderr
    twin = t.all[-1]
    r = t.patrol("mark", twin.id[:2], "false", check=False)
    assert r.returncode == 2 and "matches" in r.stderr and twin.id in r.stderr
    r = t.patrol("show", "0000zz", check=False)
    assert r.returncode == 2 and "no anomaly with id" in r.stderr
    r = t.patrol("mark", "inc-web", "true", check=False)
    assert r.returncode == 2 and "is an incident" in r.stderr and "--incident inc-web-1" in r.stderr
    r = t.patrol("mark-all", "false", check=False)
    assert r.returncode == 2 and "--all" in r.stderr
    assert t.labels_on_topic() == []  # nothing was written


def test_missing_topic_and_missing_broker_are_clear(kafka):
    r = run_patrol("label", "list", env={"PATROL_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
                                         "PATROL_TOPICS__ANOMALIES": "no-such-topic-xyz"})
    assert r.returncode == 1 and "no-such-topic-xyz" in r.stderr and "does not exist" in r.stderr
    r = run_patrol("label", "list")
    assert r.returncode == 2 and "PATROL_KAFKA__BOOTSTRAP_SERVERS" in r.stderr


REPLAY = datetime(2020, 2, 7, 12, 0, tzinfo=timezone.utc)  # replayed logs: years before the wall clock


@pytest.fixture
def replayed(kafka):
    """Anomalies from replayed 2020 logs: minutes before 12:00 UTC on 2020-02-07."""
    t = Topics(kafka.bootstrap)
    t.back = {m: make_anomaly("error_ratio", "web", -m, ["spike"], base=REPLAY) for m in (0, 30, 100, 200, 1500)}
    t.back[45] = make_anomaly("latency_p99", "we\tb\nx", -45, ["spike", "seasonal"], base=REPLAY)
    t.produce(t.anomalies, list(t.back.values()))
    return t


def test_times_count_back_from_the_newest_anomaly(replayed):
    t = replayed
    ids = lambda *args: {r["id"] for r in t.json("list", "--json", *args)}  # noqa: E731
    back = lambda *ms: {t.back[m].id for m in ms}  # noqa: E731
    r = t.patrol("list", "--json", "--since", "2h")
    assert {a["id"] for a in json.loads(r.stdout)} == back(0, 30, 45, 100)
    assert "since 2020-02-07 10:00 UTC (2h before the newest anomaly, 2020-02-07 12:00 UTC)" in r.stderr
    assert ids("--since", "newest-30m") == back(0, 30)
    assert ids("--since", "2020-02-07 11:00", "--until", "2020-02-07T11:40Z") == back(30, 45)
    assert ids("--since", "2020-02-07") == back(0, 30, 45, 100, 200)  # a date alone is its midnight, UTC
    assert ids("--until", "1.5h") == back(100, 200, 1500)

    # Wall-clock times are asked for explicitly; when they hide everything, the user is told why.
    r = t.patrol("list", "--since", "now-2h")
    assert r.returncode == 0 and r.stdout.splitlines() == [r.stdout.splitlines()[0]]  # the TSV header only
    assert "no anomaly in the time window" in r.stderr and "2h before the wall clock" in r.stderr
    assert "newest anomaly on the topic is at 2020-02-07 12:00 UTC" in r.stderr and "--since 2h" in r.stderr
    r = t.patrol("mark-all", "false", "--service", "web", "--since", "now-1h", check=False)
    assert r.returncode == 1 and "nothing marked" in r.stderr and "--since 1h" in r.stderr
    dry = t.patrol("mark-all", "false", "--service", "web", "--since", "90m", "--dry-run")
    assert "would mark 2 anomalies false" in dry.stdout and "1h 30m before the newest anomaly" in dry.stdout
    assert t.labels_on_topic() == []
    bad = t.patrol("list", "--since", "2 hours ago", check=False)
    assert bad.returncode == 2 and "cannot read time" in bad.stderr and "now-2h" in bad.stderr

    # On a terminal the default is the table.
    rc, screen = run_in_pty(["label", "list", "--since", "2h"], t.env)
    assert rc == 0 and "4 of 4 matching anomalies" in screen and "┃ time (UTC)" in screen
    assert "2h before the newest anomaly" in screen and "\t" not in screen

    # A tab or newline inside a value is escaped, so each anomaly stays one TSV line.
    tsv = t.patrol("list", "--metric", "latency_p99").stdout.splitlines()
    assert len(tsv) == 2 and tsv[1].split("\t")[5] == "we\\tb\\nx"


def test_unchanged_verdicts_are_not_published_again(seeded):
    t = seeded
    a = t.all
    t.patrol("mark", a[0].id, "true")
    again = t.patrol("mark", a[0].id, "true")
    assert "is already true" in again.stdout and "nothing published" in again.stdout
    assert len(t.labels_on_topic()) == 1
    t.patrol("mark", a[0].id, "true", "--force", "--note", "confirmed by on-call")
    assert [lb.note for _, lb in t.labels_on_topic()] == [None, "confirmed by on-call"]

    # Undoing the repeated label leaves the verdict as it was, and says so (never "true -> true").
    dry = t.patrol("undo", "--dry-run").stdout
    assert f"anomaly {a[0].id}: true (unchanged: the undone label repeated the verdict before it)" in dry
    assert "->" not in dry
    t.patrol("undo")
    assert f"anomaly {a[0].id}: true -> unlabeled (retracted)" in t.patrol("undo", "--dry-run").stdout

    # Someone else labeled after you: undoing your label keeps theirs.
    t.patrol("mark", a[1].id, "false")
    t.patrol("mark", a[1].id, "true", "--author", "bob")
    dry = t.patrol("undo", "--dry-run").stdout
    assert f"anomaly {a[1].id}: true (unchanged: a later label by bob keeps it)" in dry
