"""Seasonality, determinism, pacing and the Python API of the traffic generator."""

from __future__ import annotations

import numpy as np
import pytest

from patrol.sim.generator import generate_chunks, generate_lines, resolve_start
from patrol.sim.generator.sinks import Pacer
from test_generator_helpers import parse


def test_same_seed_same_lines_other_seed_differs():
    a = list(generate_lines(n=5000, seed=42, start="2026-03-02T08:00:00Z", n_clients=2000))
    b = list(generate_lines(n=5000, seed=42, start="2026-03-02T08:00:00Z", n_clients=2000))
    c = list(generate_lines(n=5000, seed=43, start="2026-03-02T08:00:00Z", n_clients=2000))
    assert a == b
    assert [x[2] for x in a] != [x[2] for x in c]


def test_duration_bound_is_simulated_time_and_prefix_stable():
    start = resolve_start("2026-03-02T08:00:00Z")
    short = list(generate_lines(seed=1, start=start, duration="10m", incidents="none", n_clients=2000))
    assert short and short[-1][0] < start + 600 and short[0][0] >= start
    longer = list(generate_lines(n=len(short) + 100, seed=1, start=start, incidents="none", n_clients=2000))
    # The same seed yields the same stream whatever the bound; a bound only cuts it.
    assert [x[2] for x in longer[: len(short)]] == [x[2] for x in short]


def test_diurnal_and_weekly_seasonality_visible_in_lines():
    # Two simulated days from Friday 00:00 UTC at a low base rate; counts from parsed lines.
    start = resolve_start("2026-01-09T00:00:00Z")  # a Friday
    lines = [l for c in generate_chunks(seed=5, start=start, duration="2d", incidents="none", base_rate=0.35,
                                               n_clients=2000)
             for l in c.lines]
    p = parse(lines)
    hour = ((p.t - start) // 3600).astype(int)
    per_hour = np.bincount(hour, minlength=48)
    peak, trough = per_hour[14:17].mean(), per_hour[2:5].mean()   # 15:00 peak, 03:00 trough
    assert peak / trough > 3.0, (peak, trough)
    friday, saturday = per_hour[:24].sum(), per_hour[24:].sum()
    assert friday / saturday > 1.25, (friday, saturday)


def test_base_rate_sets_volume():
    start = resolve_start("2026-01-07T00:00:00Z")  # a Wednesday: weekday factor ~1.1
    n = sum(len(c) for c in generate_chunks(seed=2, start=start, duration="1d", incidents="none", base_rate=1.0,
                                     n_clients=2000))
    assert 0.95 * 86400 < n < 1.3 * 86400


class FakeClock:
    """A wall clock that moves only when the pacer sleeps: the schedule is checked exactly, at no wait."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds
        self.sleeps += 1


def _released(pacer: Pacer, chunks, clock: FakeClock) -> list[tuple[float, float, int]]:
    """(wall time, first event time, lines) of every slice the pacer releases."""
    return [(clock.now, float(part.times[0]), len(part)) for c in chunks for part in pacer.slices(c)]


def test_pacer_speedup_maps_event_time_to_wall_time():
    start = resolve_start("2026-01-07T12:00:00Z")
    chunks = list(generate_chunks(seed=2, start=start, duration="60s", incidents="none", base_rate=20,
                                  n_clients=500))
    clock = FakeClock()
    released = _released(Pacer(speedup=120.0, clock=clock, sleep=clock.sleep), chunks, clock)
    assert sum(n for _, _, n in released) > 500
    wall0, ev0, _ = released[0]
    for wall, ev, _ in released:  # each slice leaves when its first line is due, never before
        assert wall - wall0 == pytest.approx((ev - ev0) / 120.0, abs=1e-9)
    assert 0.45 < released[-1][0] - wall0 <= 0.5  # 60 simulated seconds -> 0.5 wall seconds
    assert clock.sleeps >= 5  # released in small slices (about 20 a wall second), not one burst


def test_pacer_rate_limits_lines_per_second():
    chunks = list(generate_chunks(n=2000, seed=2, start="2026-01-07T12:00:00Z", incidents="none", n_clients=500))
    clock = FakeClock()
    released = _released(Pacer(rate=4000.0, clock=clock, sleep=clock.sleep), chunks, clock)
    assert sum(n for _, _, n in released) == 2000
    sent = 0
    for wall, _, n in released:  # the k-th line leaves no earlier than k / rate seconds after the first
        assert wall - released[0][0] == pytest.approx(sent / 4000.0, abs=1e-9)
        sent += n
    assert released[-1][0] - released[0][0] == pytest.approx((2000 - released[-1][2]) / 4000.0)
