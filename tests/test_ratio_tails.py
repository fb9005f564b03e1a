"""The ratio detector's fast beta-binomial tails agree with scipy's exact distribution."""

import numpy as np
import pytest
from scipy.stats import betabinom

from patrol.detectors.base import tail_to_z
from patrol.detectors.ratio import RatioDetector


def exact_z(k, n, a, b):
    pm = betabinom.pmf(k, n, a, b)
    up, dn = betabinom.sf(k, n, a, b) + 0.5 * pm, betabinom.cdf(k - 1, n, a, b) + 0.5 * pm
    return max(tail_to_z(up), 0.0) if up < dn else min(-tail_to_z(dn), 0.0)


@pytest.mark.parametrize("n", [3, 10, 64, 65, 200, 1000, 10_000, 100_000])
@pytest.mark.parametrize("p, conc", [(0.01, 300), (0.2, 50), (0.01, 30), (0.001, 300), (0.5, 100)])
def test_z_matches_scipy_within_alerting_range(n, p, conc):
    det = RatioDetector()
    det.s["b"][:] = conc - 1                      # rate() == p, concentration == conc
    det.s["a"][:] = p * conc - det.prior_rate
    ks = np.unique(np.round(np.linspace(0, min(n, n * p * 8 + 20), 40)))
    z = det.z_of(ks, np.full(ks.shape, float(n)))
    for k, zk in zip(ks, z):
        z0 = exact_z(k, n, p * conc, (1 - p) * conc)
        if abs(z0) <= 6:  # beyond that both say "extremely unusual"
            assert zk == pytest.approx(z0, abs=0.1), (k, n)
