"""Suppression of a labeled-false pattern: false alarms of one direction at the same time of day
(or weekday) on different days."""

from __future__ import annotations

from .calibration import as_size
from .constants import DAY_MIN, MARGIN, MAX_SPAN_MIN, MIN_PATTERN_DAYS, PATTERN_SIZES, SLACK_MIN
from .features import _within

def _short(label_id: str) -> str:
    return str(label_id)[:8]  # label ids are hex hashes; `patrol label` accepts 8-character prefixes


def _hhmm(minute: int) -> str:
    return f"{minute % DAY_MIN // 60:02d}:{minute % 60:02d}"


_DOW = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class Pattern:
    """Labeled-false alerts of one direction around one time of day (every day, or weekly).

    Covers minutes ``start .. start + width`` of the UTC day (+- ``SLACK_MIN``), sizes up to
    ``MARGIN`` x ``top``: the *second* largest band multiple and fold change among its last
    ``PATTERN_SIZES`` labeled sizes (the largest when it has one), so a single outsized false alarm
    (a night the weekly backup ran during the job, an early night the seasonal model had not learned)
    cannot stretch it over a real incident twice its usual size. ``label`` is the short id of the label that last widened it. ``mask`` holds the weekdays its false labels fell on: when
    they fell on one weekday only, on different days (so at least a week apart), the cause is weekly
    (a Sunday backup) and the pattern covers that weekday only.
    """

    __slots__ = ("sign", "start", "width", "sizes", "n", "label", "day", "mask")

    def __init__(self, sign: int, start: int, width: int, sizes: list, n: int, label: str, day: int = -1, mask: int = 0):
        self.sign, self.start, self.width, self.n, self.label = sign, start, width, n, label
        if not isinstance(sizes, (list, tuple)) or (sizes and not isinstance(sizes[0], (list, tuple))):
            sizes = [sizes]  # a state older than size lists: its top only (a bare band multiple before fold)
        self.sizes = [as_size(z) for z in sizes][-PATTERN_SIZES:]
        self.day = day    # anchor day of the last label counted in n (n counts distinct days)
        self.mask = mask  # weekdays (bit 0 = Monday) of the days counted; 0 in states older than this field

    @property
    def active(self) -> bool:
        return self.n >= MIN_PATTERN_DAYS

    @property
    def top(self) -> list:
        """Second largest labeled size, measure by measure (the largest with one label)."""
        def second(vals):
            vals = sorted(v for v in vals if v is not None)
            return None if not vals else vals[-2] if len(vals) > 1 else vals[-1]
        return [second(z[0] for z in self.sizes), second(z[1] for z in self.sizes)]

    def add(self, size: list) -> None:
        self.sizes = (self.sizes + [list(size)])[-PATTERN_SIZES:]

    @property
    def weekly(self) -> bool:
        return self.active and self.mask != 0 and self.mask & (self.mask - 1) == 0  # one weekday only

    def count(self, day: int) -> None:
        if day != self.day:
            self.n, self.day = self.n + 1, day
            self.mask |= 1 << ((day + 3) % 7)  # 1970-01-01 was a Thursday

    def offset(self, minute: int) -> int:
        return (minute - self.start) % DAY_MIN

    def near(self, minute: int) -> bool:
        d = self.offset(minute)
        return d <= self.width + SLACK_MIN or d >= DAY_MIN - SLACK_MIN

    def anchor(self, day: int, minute: int) -> int:
        """The day whose occurrence of the pattern's hours holds ``minute`` of ``day`` (for a
        pattern around midnight, 00:20 belongs to the previous evening's occurrence)."""
        d = self.offset(minute)
        if d > self.width + SLACK_MIN:   # before the start: part of that day's occurrence, unless it wrapped
            return day if minute >= self.start - SLACK_MIN else day + 1
        return day if minute >= self.start else day - 1

    def reaches(self, sign: int, minute: int, size: list, day: int | None = None) -> bool:
        if sign != self.sign or not self.near(minute) or not _within(size, self.top):
            return False
        return not self.weekly or day is None or self.mask >> ((self.anchor(day, minute) + 3) % 7) & 1 == 1

    def covers(self, sign: int, minute: int, size: list, day: int | None = None) -> bool:
        """Would suppress: within reach (weekday included), and seen on enough days to be a recurring pattern."""
        return self.active and self.reaches(sign, minute, size, day)

    def widened(self, minute: int) -> tuple[int, int] | None:
        """(start, width) once ``minute`` is included, or None when that would exceed ``MAX_SPAN_MIN``."""
        d = self.offset(minute)
        if d <= self.width:
            return self.start, self.width
        fwd, back = d, self.width + DAY_MIN - d  # extend the end, or move the start back
        start, width = (self.start, fwd) if fwd <= back else (minute, back)
        return (start, width) if width <= MAX_SPAN_MIN else None

    def describe(self) -> str:
        word = "up" if self.sign > 0 else "down"
        lo, hi = self.start - SLACK_MIN, self.start + self.width + SLACK_MIN
        size = f"<= {MARGIN * self.top[0]:.1f}x band"
        if self.top[1] is not None:
            f = 1.0 + MARGIN * self.top[1]
            size += f", {'<=' if self.sign > 0 else '>='} {f if self.sign > 0 else 1.0 / f:.2g}x expected"
        what = f"{word} alerts {size} at {_hhmm(lo)}-{_hhmm(hi)}"
        if self.weekly:
            what += " on " + "/".join(d for i, d in enumerate(_DOW) if self.mask >> i & 1) + "s"
        return what if self.active else f"{what} from day {MIN_PATTERN_DAYS} (now {self.n})"

    def to_state(self) -> list:
        return [self.sign, self.start, self.width, self.sizes, self.n, self.label, self.day, self.mask]
