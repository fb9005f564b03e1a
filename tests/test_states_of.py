"""Bulk state extraction equals the per-row state, for every metric kind."""

import numpy as np
import pytest

from patrol.detectors import BatchEnsemble


@pytest.mark.parametrize("kind", ["gauge", "count", "ratio", "latency"])
def test_states_of_equals_state_of(kind):
    n = 12
    ens = BatchEnsemble(n_series=n, metric_kind=kind, direction="up")
    rng = np.random.default_rng(1)
    for i in range(80):
        x = rng.poisson(40, n).astype(float)
        ens.update(x / 100 if kind == "ratio" else x, 60.0 * i, np.full(n, 100.0) if kind == "ratio" else None)
    rows = [0, 5, 11, 3]
    assert ens.states_of(rows) == [ens.state_of(i) for i in rows]
    assert ens.states_of([]) == []
