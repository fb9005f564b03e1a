"""Times given to ``patrol label --since/--until``: relative to the data, to the wall clock, or absolute.

Anomalies are stamped with *event* time (the log lines' own timestamps), so on replayed or backfilled
logs "the last 2 hours" of the wall clock holds nothing. A bare duration therefore counts back from
the newest anomaly on the topic (the data's own "now"); ``now-2h`` counts back from the wall clock.

==================  ===========================================================================
form                meaning
==================  ===========================================================================
``2h``, ``30m``     that long before the newest anomaly's window start (also ``newest-2h``)
``now-2h``, ``now``  that long before the wall clock / the wall clock
``2026-11-27T14:00``  ISO 8601 (date only, ``T`` or space, seconds, ``Z`` or an offset; UTC when no zone)
==================  ===========================================================================

Units: ``s``, ``m``/``min``, ``h``, ``d``, ``w``; decimals allowed (``1.5h``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_FORM = re.compile(r"^\s*(?:(now|newest)\s*(?:-\s*)?)?(?:(\d+(?:\.\d+)?)\s*(s|min|m|h|d|w))?\s*$", re.IGNORECASE)

FORMS = ("a duration before the newest anomaly (30m, 2h, 7d), before the wall clock (now-2h, now), "
         "or ISO 8601 (2026-11-27, 2026-11-27T14:00, 2026-11-27T14:00:00+01:00; UTC when no zone)")


@dataclass(frozen=True)
class TimeSpec:
    """A parsed ``--since``/``--until`` value; :meth:`resolve` turns it into a point in time."""

    text: str
    anchor: Optional[str]            # "newest", "now", or None for an absolute time
    back: timedelta = timedelta(0)   # how far before the anchor
    at: Optional[datetime] = None    # the absolute time

    def resolve(self, newest: Optional[datetime], now: datetime) -> datetime:
        """The point in time; ``newest`` is the newest anomaly's window start (``now`` when there is none)."""
        if self.anchor is None:
            return self.at  # type: ignore[return-value]
        base = newest if self.anchor == "newest" and newest is not None else now
        return base - self.back

    def describe(self, newest: Optional[datetime], now: datetime) -> str:
        """``2026-11-27 12:00 UTC (2h before the newest anomaly, 2026-11-27 14:00)`` and the like."""
        t = self.resolve(newest, now)
        if self.anchor is None:
            return _utc(t)
        if self.anchor == "now" or newest is None:
            rel = "the wall clock" + (" (no anomaly to count from)" if self.anchor == "newest" else "")
        else:
            rel = f"the newest anomaly, {_utc(newest)}"
        return _utc(t) + (f" ({span(self.back)} before {rel})" if self.back else f" ({rel})")


def parse_time(text: str) -> TimeSpec:
    """Parse one ``--since``/``--until`` value; raises ``ValueError`` naming the accepted forms."""
    m = _FORM.match(text or "")
    if m and (m.group(1) or m.group(2)):
        anchor = (m.group(1) or "newest").lower()
        back = timedelta(seconds=float(m.group(2)) * _UNIT_S[m.group(3).lower()]) if m.group(2) else timedelta(0)
        return TimeSpec(text, anchor, back)
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"cannot read time {text!r}: use {FORMS}") from None
    return TimeSpec(text, None, at=t if t.tzinfo else t.replace(tzinfo=timezone.utc))


def _utc(t: datetime) -> str:
    t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M" + (":%S" if t.second else "")) + " UTC"


def span(d: timedelta) -> str:
    """``2h``, ``1d 3h``, ``45m``: a duration the way a user would type it back."""
    s = int(d.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return " ".join(parts[:2]) or "0s"


def ago(t: datetime, now: datetime) -> str:
    """How long before ``now`` (``3d 2h ago``), or ``in the future`` for clock skew."""
    d = now - t
    return f"{span(d)} ago" if d >= timedelta(0) else f"{span(-d)} in the future"
