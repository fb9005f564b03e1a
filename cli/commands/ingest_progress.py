"""Progress and the final summary of ``patrol ingest`` on stderr.

A rich progress bar per input when stderr is a terminal; otherwise one plain line every few seconds,
so a log file or CI output gets a readable record instead of redraw codes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .ingest import Source


def _size(n: float) -> str:
    """``812 B``, ``44.1 MB``: decimal units (1 kB = 1000 B)."""
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _clock(s: float) -> str:
    s = int(s + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass
class Counts:
    lines: int = 0           # produced (handed to the producer)
    bytes: int = 0
    empty: int = 0           # zero-length lines skipped
    refused: int = 0         # lines the producer refused outright (e.g. larger than message.max.bytes)
    failed: int = 0          # delivery failures reported by the broker / timeouts
    first_error: Optional[str] = None
    started: float = field(default_factory=time.monotonic)

    def error(self, msg: str) -> None:
        self.first_error = self.first_error or msg


class Reporter:
    """Progress on stderr: a rich progress bar on a terminal, a plain line every ``every`` seconds
    otherwise (``every`` <= 0: none); the summary is always printed."""

    def __init__(self, counts: Counts, enabled: bool, every: float):
        from rich.console import Console

        self.c = counts
        self.console = Console(stderr=True, highlight=False)
        self.live = enabled and self.console.is_terminal
        self.every = every if enabled else 0.0
        self.src: Optional[Source] = None
        self.src_t0 = time.monotonic()
        self.src0 = (0, 0)
        self.next_plain = time.monotonic() + self.every
        self.progress = None
        self.task = None
        if self.live:
            from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                     TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                                     TextColumn("ETA"), TimeRemainingColumn(), console=self.console)
            self.progress.start()

    def start(self, src: Source) -> None:
        self.src, self.src_t0, self.src0 = src, time.monotonic(), (self.c.lines, self.c.bytes)
        if self.progress is not None:
            self.task = self.progress.add_task(src.name + (" (gzip)" if src.gzip else ""), total=src.size,
                                               stats="")

    def _stats(self) -> str:
        """This input's lines, bytes and rate (a bar per input on a terminal)."""
        el = max(time.monotonic() - self.src_t0, 1e-6)
        lines, size = self.c.lines - self.src0[0], self.c.bytes - self.src0[1]
        return f"{lines:,} lines  {_size(size)}  {lines / el:,.0f} lines/s"

    def tick(self) -> None:
        """Called every few hundred lines; cheap when nothing is due."""
        now = time.monotonic()
        if self.progress is not None:
            pos = self.src.position() if self.src else None
            self.progress.update(self.task, stats=self._stats(), **({"completed": pos} if pos is not None else {}))
            return
        if self.every <= 0 or now < self.next_plain:
            return
        self.next_plain = now + self.every
        line = f"ingest: {self.src.name if self.src else '-'}: {self._stats()}"
        pos = self.src.position() if self.src else None
        if pos is not None and self.src.size:
            frac = pos / self.src.size
            spent = now - self.src_t0
            eta = spent * (1 - frac) / frac if frac > 0 else None
            line += f"  {100 * frac:.0f}%" + (f"  ETA {_clock(eta)}" if eta is not None else "")
        self.console.print(line, soft_wrap=True)

    def done(self, src: Source) -> None:
        """``src`` was read to its end (called before it is closed)."""
        if self.progress is not None and self.task is not None:
            total = src.size or 1  # stdin: a full bar once it ended
            self.progress.update(self.task, completed=total, total=total, stats=self._stats())

    def stop(self) -> None:
        if self.progress is not None:
            self.tick()
            self.progress.stop()

    def summary(self, topic: str, n_inputs: int, delivered: int, stopped: Optional[str]) -> None:
        c = self.c
        el = max(time.monotonic() - c.started, 1e-6)
        lost = c.lines + c.refused - delivered
        msg = (f"ingest: {delivered:,} of {c.lines + c.refused:,} lines ({_size(c.bytes)}) from {n_inputs} "
               f"input{'s' if n_inputs != 1 else ''} delivered to {topic!r} in {el:.1f} s "
               f"({delivered / el:,.0f} lines/s)")
        if c.empty:
            msg += f"; {c.empty:,} empty lines skipped"
        self.console.print(msg, soft_wrap=True)
        if stopped:
            self.console.print(f"ingest: stopped early: {stopped}", soft_wrap=True)
        if lost:
            self.console.print(f"[red]error:[/] {lost:,} line{'s' if lost != 1 else ''} NOT delivered (first error: {c.first_error})",
                               soft_wrap=True)
