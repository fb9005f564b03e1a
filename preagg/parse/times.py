"""Timestamps -> float epoch seconds (UTC), with bounded caches for nginx stamps.

nginx's ``$time_local`` (``07/Feb/2020:11:48:51 +0000``) is converted per minute
prefix once (no strptime per line) and then per distinct second once.
"""

from __future__ import annotations

import calendar
from datetime import datetime

from patrol.preagg.errors import ParseError

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

# Minute-prefix cache: "07/Feb/2020:11:48" + "+0000" -> epoch of that minute.
# Lines arrive roughly in time order, so a few entries serve millions of lines;
# it is cleared when full to stay bounded on adversarial input.
TIME_CACHE: dict[str, float] = {}
# Per-second cache: full validated stamp -> epoch; lets the hot path do one
# dict lookup and no slicing.  Same bound and clearing rule.
SECOND_CACHE: dict[str, float] = {}
_TIME_CACHE_MAX = 4096



def clf_minute(ts: str) -> float:
    """Epoch of the minute of a ``07/Feb/2020:11:48:51 +0000`` stamp, cached.

    Raises
    ------
    ParseError
        ``bad_time`` when the stamp is not ``dd/Mon/yyyy:HH:MM:SS +hhmm``.
    """
    key = ts[:17] + ts[20:]
    base = TIME_CACHE.get(key)
    if base is not None:
        return base
    if (len(ts) != 26 or ts[2] != "/" or ts[6] != "/" or ts[11] != ":" or ts[14] != ":"
            or ts[17] != ":" or ts[20] != " " or ts[21] not in "+-"
            or not (ts[0:2] + ts[7:11] + ts[12:14] + ts[15:17] + ts[22:26]).isdigit()
            or not ts.isascii()):
        raise ParseError(f"timestamp {ts!r} is not dd/Mon/yyyy:HH:MM:SS +hhmm", "bad_time")
    try:
        mon = _MONTHS[ts[3:6]]
        # datetime() validates day-of-month, hour and minute ranges for us.
        dt = datetime(int(ts[7:11]), mon, int(ts[0:2]), int(ts[12:14]), int(ts[15:17]))
        oh, om = int(ts[22:24]), int(ts[24:26])
        if oh > 23 or om > 59:
            raise ValueError
        off = oh * 3600 + om * 60
    except (KeyError, ValueError):
        raise ParseError(f"timestamp {ts!r} has an invalid date, time or zone", "bad_time") from None
    base = float(calendar.timegm(dt.timetuple())) - (off if ts[21] == "+" else -off)
    if len(TIME_CACHE) >= _TIME_CACHE_MAX:
        TIME_CACHE.clear()
    TIME_CACHE[key] = base
    return base


def clf_time(ts: str) -> float:
    """Parse an nginx ``$time_local`` stamp to float epoch seconds (UTC), cached per second."""
    t = SECOND_CACHE.get(ts)
    if t is not None:
        return t
    base = clf_minute(ts)
    sec = ts[18:20]
    if not (sec.isascii() and sec.isdigit()) or int(sec) > 60:
        raise ParseError(f"timestamp {ts!r} has invalid seconds", "bad_time")
    t = base + int(sec)
    if len(SECOND_CACHE) >= _TIME_CACHE_MAX:
        SECOND_CACHE.clear()
    SECOND_CACHE[ts] = t
    return t


def iso_time(ts) -> float:
    """Parse an ISO-8601 stamp (``2020-02-07T11:48:51.123Z``, ``+00:00``) to epoch seconds."""
    if not isinstance(ts, str):
        raise ParseError(f"timestamp {ts!r} is not a string", "bad_time")
    s = ts.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is None:
            # A stamp without a zone is taken as UTC (documented); guessing local time
            # on the collector would silently shift every window.
            return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6
        return dt.timestamp()
    except (ValueError, OverflowError):
        raise ParseError(f"timestamp {ts[:40]!r} is not ISO-8601 or out of range", "bad_time") from None


def epoch_time(v) -> float:
    """Parse ``$msec``-style epoch seconds (``1581076131.123``)."""
    try:
        t = float(v)
    except (TypeError, ValueError, OverflowError):
        raise ParseError(f"epoch timestamp {str(v)[:40]!r} is not a number", "bad_time") from None
    if t != t or t in (float("inf"), float("-inf")):
        raise ParseError(f"epoch timestamp {str(v)[:40]!r} is not finite", "bad_time")
    return t


def any_time(v) -> float:
    """Parse a timestamp of any supported shape (number, ISO-8601, nginx CLF)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return epoch_time(v)
    if isinstance(v, str):
        s = v.strip()
        if s[:1].isdigit() and len(s) >= 3 and s[2] == "/":
            return clf_time(s)
        if s.replace(".", "", 1).isdigit():
            return epoch_time(s)
        return iso_time(s)
    raise ParseError(f"timestamp {v!r} has an unsupported type", "bad_time")
