"""``patrol ingest FILE... | -``: feed access-log files or stdin to the logs topic, one message a line.

Lines are passed through byte for byte (only the line terminator, ``\\n`` or ``\\r\\n``, is
removed; zero-length lines are skipped and counted): judging lines is the preagg stage's job, which
dead-letters what it cannot parse. Gzip input is recognised by its magic bytes, so ``x.log.gz``,
a renamed one and gzip on stdin all work.

Keys: by default each line is keyed by its ``$proxy_upstream_name`` as parsed with the configured
``preagg.log_format`` (what the generator and the shippers do, see docs/preagg.md: one service's
lines share a partition and keep their order); a line without one (or that does not parse) gets no
key. ``--key none`` keys nothing.

Delivery: an idempotent producer (retries neither duplicate nor reorder a key's lines), flushed
before exit; exit 0 only when every line was acknowledged by the broker.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import signal
import stat
import sys
import time
import zlib
from dataclasses import dataclass
from enum import Enum
from typing import IO, Annotated, Callable, Iterator, Optional

import typer

from .ingest_progress import Counts, Reporter

GZIP_MAGIC = b"\x1f\x8b"
# librdkafka settings for bulk line shipping; settings' kafka.extra (in client_config) override them.
PRODUCER_DEFAULTS = {
    "linger.ms": 20,
    "compression.type": "lz4",
    "enable.idempotence": True,  # a retry neither duplicates nor reorders a key's lines
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 1_048_576,
    # Only failures call back: one Python call per line would cost more than producing it.
    "delivery.report.only.error": True,
}
POLL_EVERY = 1000  # lines between producer polls (serves delivery reports)


class KeyMode(str, Enum):
    upstream = "upstream"
    none = "none"


class IngestError(RuntimeError):
    """Input or broker trouble the command reports as a one-line error (exit ``code``)."""

    def __init__(self, msg: str, code: int = 1):
        super().__init__(msg)
        self.code = code


class Interrupted(Exception):
    """Raised by the SIGINT/SIGTERM handler: stop reading, flush, summarise."""


# ---------------------------------------------------------------- inputs


@dataclass
class Source:
    """One input: a file path or ``-`` (stdin)."""

    name: str
    raw: IO[bytes]          # the file as opened (compressed bytes for gzip)
    lines: IO[bytes]        # what lines are read from (decompressing when gzip)
    size: Optional[int]     # bytes on disk; None for stdin / pipes
    gzip: bool

    def position(self) -> Optional[int]:
        """Bytes of the raw input consumed so far (for progress / ETA); None when unknown."""
        if self.size is None:
            return None
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        if self.raw is not sys.stdin.buffer:
            self.raw.close()


def check_inputs(paths: list[str]) -> None:
    """Fail before anything is produced when an input cannot be read (exit 2)."""
    if paths.count("-") > 1:
        raise IngestError("'-' (stdin) given more than once", 2)
    for p in paths:
        if p == "-":
            continue
        if os.path.isdir(p):
            raise IngestError(f"{p}: is a directory", 2)
        try:
            with open(p, "rb"):
                pass
        except OSError as exc:
            raise IngestError(f"cannot read {p}: {exc.strerror or exc}", 2) from None


def open_source(path: str) -> Source:
    if path == "-":
        if sys.stdin is None:
            raise IngestError("'-' given but there is no standard input", 2)
        raw: IO[bytes] = sys.stdin.buffer
        size = None
        head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    else:
        try:
            raw = open(path, "rb")
            st = os.fstat(raw.fileno())
            head = raw.peek(2)[:2]
        except OSError as exc:  # gone or unreadable since check_inputs
            raise IngestError(f"cannot read {path}: {exc.strerror or exc}") from None
        size = st.st_size if stat.S_ISREG(st.st_mode) else None  # a FIFO or /dev/stdin has no useful size
    is_gz = head == GZIP_MAGIC
    lines: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if is_gz else raw  # type: ignore[assignment]
    return Source("stdin" if path == "-" else path, raw, lines, size, is_gz)


def iter_lines(src: Source) -> Iterator[bytes]:
    """Lines without their terminator (``\\n`` or ``\\r\\n``); a last line without one counts too."""
    try:
        for line in src.lines:
            if line.endswith(b"\n"):
                line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            yield line
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise IngestError(f"{src.name}: broken gzip data ({exc or type(exc).__name__}); the lines before it were sent") from None
    except OSError as exc:
        raise IngestError(f"{src.name}: read error: {exc}") from None


# ---------------------------------------------------------------- keys


# ingress-nginx's default format: ... "$http_user_agent" $request_length $request_time
# [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr ...  Finding the upstream
# with one regex costs ~0.8 us a line against ~6.5 us for the full parse (measured on generated
# lines); the parse is the fallback when the regex does not match, and tests check both agree.
INGRESS_UPSTREAM = re.compile(rb'" (?:\d+|-) (?:[\d.]+|-) \[([^\[\]\s]*)\] \[[^\[\]\s]*\] ')


def key_function(mode: KeyMode, log_format: str) -> Callable[[bytes], Optional[bytes]]:
    """``line -> key``: the line's ``$proxy_upstream_name`` (as ``preagg.log_format`` parses it) or None."""
    if mode is KeyMode.none:
        return lambda line: None
    from patrol.preagg.parse import get_parser

    try:
        parse = get_parser(log_format)
    except ValueError as exc:
        raise IngestError(f"preagg.log_format: {exc}", 2) from None

    fast = INGRESS_UPSTREAM.search if log_format == "ingress-nginx" else None

    def upstream(line: bytes) -> Optional[bytes]:
        if fast is not None:
            m = fast(line)
            if m is not None:
                return m.group(1) or None
        try:
            up = parse(line).get("upstream_name")
        except Exception:  # any line the parser refuses is still sent, unkeyed; preagg dead-letters it
            return None
        return up.encode() if up else None

    return upstream


# ---------------------------------------------------------------- the run


class Pacer:
    """Holds line ``n`` until ``t0 + n / rate`` (wall clock), serving the producer while it waits.

    Time the input spent idle (a quiet ``tail -f``) is not saved up: when the schedule is more than
    ``MAX_BEHIND`` seconds behind, it restarts from now, so a burst after a pause still goes out at
    ``rate`` instead of all at once.
    """

    MAX_BEHIND = 1.0

    def __init__(self, rate: Optional[float], wait: Callable[[float], object],
                 clock: Callable[[], float] = time.monotonic):
        self.rate, self.wait, self.clock = rate, wait, clock
        self.t0: Optional[float] = None

    def hold(self, n: int) -> None:
        if not self.rate:
            return
        now = self.clock()
        if self.t0 is None or now - (self.t0 + n / self.rate) > self.MAX_BEHIND:
            self.t0 = now - n / self.rate
        delay = self.t0 + n / self.rate - now
        while delay > 0:
            self.wait(min(delay, 0.2))
            delay = self.t0 + n / self.rate - self.clock()


def _quiet_logger() -> logging.Logger:
    # librdkafka's own connection chatter would bury our one-line errors; failures still surface
    # through the metadata check and the delivery reports.
    log = logging.getLogger("patrol.ingest.librdkafka")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def connect(conf: dict, topic: str, timeout: float):
    """A producer for ``topic`` after checking the broker answers and the topic exists."""
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient

    quiet = {**conf, "logger": _quiet_logger()}
    try:
        md = AdminClient(quiet).list_topics(timeout=timeout)  # all topics: never auto-creates one
    except KafkaException as exc:
        raise IngestError(f"cannot reach the Kafka broker at {conf.get('bootstrap.servers')} within {timeout:g} s "
                          f"({exc.args[0].str() if hasattr(exc.args[0], 'str') else exc})") from None
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None:
        raise IngestError(f"topic {topic!r} does not exist on {conf.get('bootstrap.servers')}; "
                          "create it with `patrol topics create`")
    return Producer({**PRODUCER_DEFAULTS, **quiet, "message.timeout.ms": int(timeout * 1000)})


def ingest_all(paths: list[str], producer, topic: str, key_of: Callable[[bytes], Optional[bytes]],
               rate: Optional[float], reporter: Reporter, counts: Counts) -> None:
    """Produce every line of every input in order; counts what happened in ``counts``."""
    from confluent_kafka import KafkaException

    from patrol.streams.topics import produce_waiting

    def on_error(err, msg) -> None:  # delivery reports come for failures only (see PRODUCER_DEFAULTS)
        if err is not None:
            counts.failed += 1
            counts.error(err.str())

    pacer = Pacer(rate, producer.poll)
    n = 0
    for path in paths:
        src = open_source(path)
        reporter.start(src)
        try:
            for lineno, line in enumerate(iter_lines(src), 1):
                if not line:
                    counts.empty += 1
                    continue
                pacer.hold(n)
                n += 1
                try:
                    produce_waiting(producer, topic, line, key=key_of(line), on_delivery=on_error)
                except KafkaException as exc:  # refused before sending: too large, ...
                    counts.refused += 1
                    counts.error(f"{src.name} line {lineno}: {exc.args[0].str()} ({len(line):,} bytes)")
                    continue
                counts.lines += 1
                counts.bytes += len(line)
                if n % POLL_EVERY == 0 or rate:
                    producer.poll(0)
                    reporter.tick()
            reporter.done(src)
        finally:
            src.close()


def ingest(
    files: Annotated[list[str], typer.Argument(metavar="FILE...", help="Log files to send, in order; '-' = stdin. Gzip is detected.")],
    bootstrap: Annotated[Optional[str], typer.Option("--bootstrap", "-b", help="Kafka bootstrap servers (overrides kafka.bootstrap_servers).")] = None,
    topic: Annotated[Optional[str], typer.Option("--topic", help="Topic to produce to (default: topics.logs).")] = None,
    rate: Annotated[Optional[float], typer.Option("--rate", help="Lines per second (wall clock); default: as fast as possible.", min=0.001)] = None,
    key: Annotated[KeyMode, typer.Option("--key", help="upstream: key each line by its $proxy_upstream_name (parsed with preagg.log_format); none: no key.")] = KeyMode.upstream,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the broker (connect, each delivery, final flush).", min=1)] = 60.0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress on stderr (bar on a terminal, plain lines otherwise).")] = True,
    every: Annotated[float, typer.Option("--progress-every", help="Seconds between plain progress lines when stderr is not a terminal.", min=0)] = 5.0,
) -> None:
    """Send log lines from files or stdin to the logs topic, one message per line."""
    from patrol.cli.app import _require_broker, settings

    s = settings(**{"kafka.bootstrap_servers": bootstrap})
    _require_broker(s)
    topic = topic or s.topics.logs
    counts = Counts()
    try:
        check_inputs(files)
        key_of = key_function(key, s.preagg.log_format)
        producer = connect(s.kafka.client_config(), topic, timeout)
    except IngestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code) from None

    stopping: dict[str, Optional[str]] = {"why": None}

    def on_signal(signum, _frame):
        stopping["why"] = f"{signal.Signals(signum).name} received; the lines read before it were flushed"
        raise Interrupted()  # also ends a read blocked on a quiet stdin

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    reporter = Reporter(counts, progress, every)
    counts.started = time.monotonic()
    read_error: Optional[IngestError] = None
    try:
        ingest_all(files, producer, topic, key_of, rate, reporter, counts)
    except IngestError as exc:
        read_error = exc
    except Interrupted:
        pass
    finally:
        for sig in old:  # a second signal during the (bounded) flush must not abandon it half-way
            signal.signal(sig, lambda *_: None)
        left = producer.flush(timeout)
        reporter.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if left:
        counts.error(counts.first_error or f"{left} lines still queued after a {timeout:g} s flush")
    delivered = counts.lines - counts.failed - left
    reporter.summary(topic, len(files), delivered, stopping["why"])
    del producer  # release librdkafka now, not at interpreter exit
    if read_error is not None:
        typer.echo(f"error: {read_error}", err=True)
        raise typer.Exit(1)
    if delivered != counts.lines + counts.refused:
        raise typer.Exit(1)
    if stopping["why"] is not None:
        raise typer.Exit(130)
