"""Generation speed: the pre-aggregation benchmark needs millions of lines, so guard the rate.

Measured in CPU time of this process so a busy shared machine does not fail it; the target is
150k lines/s on one core and the generator does about twice that, so the bound has headroom.
"""

from __future__ import annotations

import os
import time

from sim.generator import Generator, write_file


def test_file_generation_at_least_150k_lines_per_cpu_second():
    gen = Generator(seed=1, start="2026-01-05T12:00:00Z", incidents="default", base_rate=500)  # build not timed
    c0 = time.process_time()
    res = write_file(os.devnull, gen.chunks(), lines=250_000)
    cpu = time.process_time() - c0
    assert res.sent == 250_000
    assert res.sent / cpu >= 150_000, f"{res.sent / cpu:,.0f} lines per CPU second"
