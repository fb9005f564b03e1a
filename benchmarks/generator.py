"""Traffic generator speed: lines per CPU second written to /dev/null.

Run ``python -m benchmarks.generator [--lines N] [--json FILE]``. The preagg benchmarks need millions of
lines, so the generator must stay well ahead of the stage (target >= 150k lines per CPU second).

Both sides write default-format ingress-nginx lines in the same process and run:
* ``generator``: :class:`sim.generator.Generator` (diurnal/weekly traffic model, incidents, client and
  path pools, vectorised rendering), the building of the model not timed;
* ``peer``: :func:`benchmarks.parse.make_lines`, a plain per-line ``random.choice`` + f-string
  generator of the same format with no traffic model, joined and written the same way.
CPU time of this process; the best of ``--repeat`` interleaved runs of each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks.parse import make_lines
from patrol.sim.generator import Generator, write_file


def _generator_run(n: int) -> float:
    gen = Generator(seed=1, start="2026-01-05T12:00:00Z", incidents="default", base_rate=500)
    c0 = time.process_time()
    res = write_file(os.devnull, gen.chunks(), lines=n)
    cpu = time.process_time() - c0
    assert res.sent == n, (res.sent, n)
    return n / cpu


def _peer_run(n: int) -> float:
    c0 = time.process_time()
    with open(os.devnull, "w") as out:
        out.write("\n".join(make_lines(n)))
    return n / (time.process_time() - c0)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=250_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="also write the JSON report here")
    a = ap.parse_args(argv)
    gen, peer = [], []
    for _ in range(a.repeat):
        gen.append(_generator_run(a.lines))
        peer.append(_peer_run(a.lines))
    report = {"lines": a.lines, "repeat": a.repeat,
              "generator_lines_per_cpu_s": round(max(gen)), "peer_lines_per_cpu_s": round(max(peer)),
              "ratio": round(max(gen) / max(peer), 2), "target_lines_per_cpu_s": 150_000,
              "meets_target": max(gen) >= 150_000,
              "runs": {"generator": [round(x) for x in gen], "peer": [round(x) for x in peer]}}
    text = json.dumps(report, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
