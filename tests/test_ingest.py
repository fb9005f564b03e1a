"""``patrol ingest`` through the real console script against the real embedded (Tansu) broker.

Inputs are generated here (the generator's lines carry the key the shippers use, so the test knows
each line's expected key) plus hand-made odd lines; every test uses its own topic.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from conftest import run_patrol
from patrol.sim.generator import generate_lines
from patrol.streams.topics import ensure_topic

PATROL = Path(sys.executable).with_name("patrol")

# Lines the preagg stage will dead-letter: ingest must pass them through byte for byte.
ODD = [
    b"\xff\xfe not utf-8 \xc3\x28 at all",
    b"nul\x00inside\x00",
    b"tab\there and a lone \r inside",
    b"x" * 100_000,                     # long, but under message.max.bytes
    b'{"log": "shipper envelope without a known format"}',
]


class Logs:
    """A private logs topic on the session broker and the env pointing `patrol` at it."""

    def __init__(self, bootstrap: str, partitions: int = 4):
        self.bootstrap = bootstrap
        self.topic = f"logs-{uuid.uuid4().hex[:8]}"
        ensure_topic({"bootstrap.servers": bootstrap}, self.topic, partitions)
        self.partitions = partitions
        self.env = {"PATROL_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "PATROL_TOPICS__LOGS": self.topic}

    def read(self, expect: int, timeout: float = 60.0) -> list[tuple[int, bytes | None, bytes, int]]:
        """(partition, key, value, timestamp ms) of the first ``expect`` messages; waits for them."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": uuid.uuid4().hex,
                      "enable.auto.commit": False, "enable.partition.eof": False})
        c.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
        got = []
        deadline = time.monotonic() + timeout
        try:
            while len(got) < expect and time.monotonic() < deadline:
                for m in c.consume(5000, 0.5):
                    assert m.error() is None or m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    if m.error() is None:
                        got.append((m.partition(), m.key(), m.value(), m.timestamp()[1]))
        finally:
            c.close()
        return got

    def count(self) -> int:
        """Messages on the topic now (reads to the end of every partition)."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": uuid.uuid4().hex,
                      "enable.auto.commit": False, "enable.partition.eof": True})
        c.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
        n, eof = 0, set()
        deadline = time.monotonic() + 30
        try:
            while len(eof) < self.partitions and time.monotonic() < deadline:
                for m in c.consume(5000, 0.5):
                    if m.error() is None:
                        n += 1
                    elif m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
        finally:
            c.close()
        assert len(eof) == self.partitions, "topic read timed out"
        return n

    def patrol(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return run_patrol("ingest", *args, env=self.env, **kw)


def run_bytes(args: list[str], env: dict, stdin: bytes, timeout: float = 120) -> subprocess.CompletedProcess:
    """``patrol`` with binary standard input through a pipe (run_patrol's input is text)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_")}
    full.update(env)
    return subprocess.run([str(PATROL), *args], input=stdin, capture_output=True, timeout=timeout, env=full)


def generated(n: int, seed: int, **kw) -> list[tuple[bytes, bytes]]:
    """(key, line) as the generator's Kafka sink would send them (key = $proxy_upstream_name)."""
    return [(k, line) for _, k, line in generate_lines(n=n, seed=seed, start="2026-01-05T18:00:00Z", n_clients=300,
                                                       **kw)]


def assert_per_key_order(got, sent: list[tuple[bytes | None, bytes]]) -> None:
    """Each key's lines arrived in one partition, in the order they were sent."""
    by_key_sent, by_key_got, parts = defaultdict(list), defaultdict(list), defaultdict(set)
    for k, v in sent:
        by_key_sent[k].append(v)
    for p, k, v, _ in sorted(got, key=lambda g: g[0]):  # stable: offset order within a partition
        by_key_got[k].append(v)
        parts[k].add(p)
    assert dict(by_key_got) == dict(by_key_sent)
    assert all(len(ps) == 1 for ps in parts.values())


def test_files_gzip_and_stdin_arrive_complete_keyed_and_in_order(kafka, tmp_path):
    logs = Logs(kafka.bootstrap)
    a, b, c = generated(1500, 1), generated(1200, 2), generated(800, 3)
    plain = tmp_path / "a.log"
    # CRLF and LF endings, blank lines (skipped, counted), odd bytes, and no newline at the very end
    plain.write_bytes(b"\n".join(l for _, l in a[:700]) + b"\r\n\r\n" + b"\r\n".join(l for _, l in a[700:1000])
                      + b"\n\n" + b"\n".join([*ODD, *(l for _, l in a[1000:])]))
    gz = tmp_path / "b.log.1"  # no .gz suffix: gzip is recognised by its magic bytes; two members
    gz.write_bytes(gzip.compress(b"".join(l + b"\n" for _, l in b[:500]))
                   + gzip.compress(b"".join(l + b"\n" for _, l in b[500:])))
    stdin = gzip.compress(b"".join(l + b"\n" for _, l in c))  # gzip through a pipe (plain stdin: SIGINT test)

    r = run_bytes(["ingest", str(plain), "-", str(gz), "--progress-every", "0"], logs.env, stdin)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    sent = a[:1000] + [(None, line) for line in ODD] + a[1000:] + c + b
    n = len(sent)
    assert f"{n:,} of {n:,} lines" in err and "from 3 inputs delivered" in err and "2 empty lines skipped" in err
    got = logs.read(n)
    assert len(got) == n and logs.count() == n  # nothing more, nothing less
    assert sorted((k, v) for _, k, v, _ in got if k is not None) == sorted((k, v) for k, v in sent if k is not None)
    assert sorted(v for _, k, v, _ in got if k is None) == sorted(ODD)  # no upstream in them: unkeyed
    assert_per_key_order([g for g in got if g[1] is not None], [s for s in sent if s[0] is not None])


def test_key_none_and_every_byte_passed_through(kafka, tmp_path):
    logs = Logs(kafka.bootstrap, partitions=1)  # one partition: total order is the input order
    lines = [l for _, l in generated(300, 4)] + ODD
    f = tmp_path / "x.log"
    f.write_bytes(b"\n".join(lines) + b"\n")
    r = logs.patrol(str(f), "--key", "none", "--no-progress")
    assert r.returncode == 0, r.stderr
    got = logs.read(len(lines))
    assert [v for _, _, v, _ in got] == lines
    assert all(k is None for _, k, _, _ in got)


def test_rate_paces_lines_and_reports_progress(kafka, tmp_path):
    logs = Logs(kafka.bootstrap, partitions=1)
    sent = generated(300, 5)
    f = tmp_path / "paced.log"
    f.write_bytes(b"".join(l + b"\n" for _, l in sent))
    rate = 200.0
    r = logs.patrol(str(f), "--rate", str(rate), "--progress-every", "0.25")
    assert r.returncode == 0, r.stderr
    got = logs.read(len(sent))
    assert [v for _, _, v, _ in got] == [l for _, l in sent]
    # Line i is held until i / rate after the first: a lower bound on the producer timestamps that a
    # slow machine can only exceed (a few ms allowed for the wall clock vs the monotonic one).
    t0 = got[0][3]
    late = [i for i, g in enumerate(got) if g[3] - t0 < 1000 * i / rate - 20]
    assert not late, f"lines sent ahead of the --rate schedule: {late[:5]}"
    progress = [line for line in r.stderr.splitlines() if line.startswith("ingest: ") and "lines/s" in line
                and " of " not in line]
    assert progress, r.stderr  # the run lasts >= 1.5 s, so plain progress lines (every 0.25 s) appear
    assert "%" in progress[-1] and "ETA" in progress[-1]
    assert "300 of 300 lines" in r.stderr


def test_input_and_broker_errors_are_clear(kafka, tmp_path):
    logs = Logs(kafka.bootstrap)
    good = tmp_path / "good.log"
    good.write_bytes(b"".join(l + b"\n" for _, l in generated(50, 6)))

    r = logs.patrol(str(good), str(tmp_path / "missing.log"))
    assert r.returncode == 2 and "cannot read" in r.stderr and "missing.log" in r.stderr
    assert "Traceback" not in r.stderr
    assert logs.count() == 0  # inputs are checked before anything is sent

    r = logs.patrol(str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr

    r = run_patrol("ingest", str(good), "--timeout", "2",
                   env={"PATROL_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1", "PATROL_TOPICS__LOGS": logs.topic})
    assert r.returncode == 1 and "cannot reach the Kafka broker at 127.0.0.1:1" in r.stderr
    assert "Traceback" not in r.stderr

    r = run_patrol("ingest", str(good), env={**logs.env, "PATROL_TOPICS__LOGS": "no-such-logs-topic"})
    assert r.returncode == 1 and "'no-such-logs-topic' does not exist" in r.stderr

    r = run_patrol("ingest", str(good))  # no broker configured at all
    assert r.returncode == 2 and "PATROL_KAFKA__BOOTSTRAP_SERVERS" in r.stderr

    # A truncated gzip: the lines before the break are delivered, and the run fails saying why.
    body = b"".join(l + b"\n" for _, l in generated(2000, 7))
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(body)[: len(gzip.compress(body)) // 2])
    r = logs.patrol(str(broken), "--no-progress")
    assert r.returncode == 1 and "broken gzip data" in r.stderr and "Traceback" not in r.stderr
    delivered = logs.count()
    assert 0 < delivered < 2000 and f"{delivered:,} of {delivered:,} lines" in r.stderr

    # A line larger than the producer's message.max.bytes is refused and counted; the rest still go.
    big = tmp_path / "big.log"
    big.write_bytes(b"before\n" + b"y" * 2_000_000 + b"\nafter\n")
    r = logs.patrol(str(big), "--no-progress")
    assert r.returncode == 1 and "1 line NOT delivered" in r.stderr and "big.log line 2" in r.stderr
    assert logs.count() == delivered + 2


def test_sigint_flushes_what_was_read_and_exits_130(kafka):
    logs = Logs(kafka.bootstrap, partitions=1)
    lines = [l for _, l in generated(100, 8)]
    full = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_")}
    full.update(logs.env)
    proc = subprocess.Popen([str(PATROL), "ingest", "-", "--progress-every", "0"], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=full)
    try:
        proc.stdin.write(b"".join(l + b"\n" for l in lines))
        proc.stdin.flush()  # stdin stays open: ingest is blocked reading when the signal comes
        got = logs.read(len(lines))  # waits until all 100 arrived (linger is 20 ms)
        assert len(got) == len(lines)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = err.decode()
    assert proc.returncode == 130, err
    assert "100 of 100 lines" in err and "stopped early: SIGINT" in err and "Traceback" not in err


def run_in_pty(args: list[str], env: dict, timeout: float = 120) -> tuple[int, str]:
    """``patrol`` with stdout and stderr on a pseudo-terminal (what a person at a terminal sees)."""
    import pty
    import select

    full = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_")}
    full.update(env, COLUMNS="160", TERM="xterm-256color")
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(PATROL), *args], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=full)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    # colours and cursor moves stripped: what is left is the text on the screen (redraws included)
    return rc, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))


def test_progress_bar_on_a_terminal(kafka, tmp_path):
    logs = Logs(kafka.bootstrap, partitions=1)
    sent = generated(400, 9)
    f = tmp_path / "tty.log.gz"
    f.write_bytes(gzip.compress(b"".join(l + b"\n" for _, l in sent)))
    rc, screen = run_in_pty(["ingest", str(f), "--rate", "400"], logs.env)
    assert rc == 0, screen
    assert "tty.log.gz (gzip)" in screen and "100%" in screen and "400 lines" in screen and "ETA" in screen
    assert "━" in screen  # the bar itself
    assert "400 of 400 lines" in screen
    assert [v for _, _, v, _ in logs.read(400)] == [l for _, l in sent]


def test_pacer_holds_lines_to_the_rate_and_saves_no_credit_while_idle():
    from patrol.cli.commands.ingest import Pacer

    clock = [0.0]
    waited = []

    def wait(s):  # a fake clock: waiting advances it
        waited.append(s)
        clock[0] += s

    p = Pacer(10.0, wait, clock=lambda: clock[0])
    for n in range(5):
        p.hold(n)
    assert clock[0] == pytest.approx(0.4) and sum(waited) == pytest.approx(0.4)  # 10 lines/s
    clock[0] += 100.0  # the input was quiet for 100 s: no 1000-line burst allowed after it
    waited.clear()
    for n in range(5, 10):
        p.hold(n)
    assert sum(waited) == pytest.approx(0.4)
    waited.clear()
    Pacer(None, wait).hold(10**6)
    assert waited == []  # unpaced: never waits


def test_ingested_lines_feed_preagg_and_bad_ones_are_dead_lettered(kafka, tmp_path):
    """The point of ingest: `patrol run preagg` turns what it sent into metric points, and dead-letters
    (never drops) the lines it passed through unjudged."""
    tag = uuid.uuid4().hex[:8]
    roles = {"logs": f"e2e-logs-{tag}", "metrics": f"e2e-mp-{tag}", "anomalies": f"e2e-an-{tag}",
             "labels": f"e2e-lb-{tag}", "dlq": f"e2e-dlq-{tag}"}
    env = {"PATROL_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
           **{f"PATROL_TOPICS__{role.upper()}": name for role, name in roles.items()}}
    assert run_patrol("topics", "create", env=env).returncode == 0
    # a low rate, so the 2000 lines span several minutes: preagg publishes the windows event time has
    # closed, and leaves the newest ones open for a later run (docs/preagg.md, end of input)
    good = [l for _, l in generated(2000, 10, base_rate=4.0)]
    f = tmp_path / "mixed.log"
    f.write_bytes(b"\n".join(good[:1000] + ODD[:3] + good[1000:]) + b"\n")
    r = run_patrol("ingest", str(f), "--no-progress", env=env)
    assert r.returncode == 0 and "2,003 of 2,003 lines" in r.stderr, r.stderr
    r = run_patrol("run", "preagg", "--max-idle", "3", env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["lines"] == 2003 and stats["dead_letters"] == 3 and stats["points"] > 0


def test_upstream_key_regex_agrees_with_the_parser():
    """The regex shortcut for ingress-nginx lines gives the key the full parser gives, and lines it
    does not match fall back to the parser."""
    from patrol.preagg.parse import get_parser
    from patrol.cli.commands.ingest import INGRESS_UPSTREAM, KeyMode, key_function

    parse = get_parser("ingress-nginx")

    def parsed(line):
        try:
            up = parse(line).get("upstream_name")
        except Exception:
            return None
        return up.encode() if up else None

    base = [l for _, l in generated(3000, 11)]
    one = base[0]
    head, tail = one.split(b"] [] ", 1)[0].rsplit(b" [", 1)[0], one.split(b"] [] ", 1)[1]  # around the upstream
    variants = [
        one.replace(b"] [] ", b"] [shop-canary-8080] ", 1),                    # alternative upstream set
        head + b" [default-web-8080] [] 10.0.0.1:80, 10.0.0.2:80 0, 12 0.001, 0.002 502, 200 abc",
        b'{"log": "' + one.replace(b'"', b'\\"') + b'", "kubernetes": {"namespace_name": "shop"}}',
        b'1.2.3.4 - - [07/Feb/2020:11:48:51 +0000] "GET / HTTP/1.1" 200 5 "-" "curl" 89 0.001 [] [] - - - - id',
        b'83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /x HTTP/1.1" 200 203 "-" "Mozilla"',  # combined
        tail,
    ]
    key = key_function(KeyMode.upstream, "ingress-nginx")
    lines = base + variants
    assert [key(line) for line in lines] == [parsed(line) for line in lines]
    assert [key(v) for v in variants[:2]] == [parsed(one), b"default-web-8080"]
    assert sum(INGRESS_UPSTREAM.search(line) is not None for line in base) == len(base)  # the shortcut is used
    assert key_function(KeyMode.upstream, "combined")(variants[-2]) is None  # no upstream in that format
    assert key_function(KeyMode.none, "ingress-nginx")(one) is None
