"""The ensemble's packed state: tagged sections, states of earlier releases, members added later."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from patrol.detectors import BatchEnsemble, Detector, ensemble, sections
from patrol.detectors.members import DetectorSpec, default_specs
from tests.fixture_data import fixture_path

T0 = 1.7e9


def _run(b: BatchEnsemble, n: int = 400, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        b.update(rng.poisson(50.0, b.n_series).astype(float), T0 + 300.0 * i)


def _payloads(state: dict) -> dict[str, bytes]:
    return sections.unpack(base64.b64decode(state["data"]))


def test_states_written_by_the_previous_release_load_and_continue_exactly():
    """v3 states (untagged parts) written by the release before tagged sections, with the result that
    release gave for the next point: loading them gives the same bytes and the same next result."""
    fx = json.loads(fixture_path("ensemble_states_v3.json").read_text())
    assert len(fx["states"]) == 3
    for case in fx["states"]:
        st, nxt, want = case["state"], case["next"], case["result"]
        assert st["v"] == 3
        b = BatchEnsemble(n_series=1, **st["config"])
        assert b.load_state(0, st) == []  # every part was in the old state
        new = b.state_of(0)
        assert new["v"] == ensemble.STATE_VERSION == 4
        assert b"".join(_payloads(new).values()) == base64.b64decode(st["data"])
        r = b.update([nxt["value"]], nxt["t"], None if nxt["n"] is None else [nxt["n"]]).row(0)
        assert (r.score, r.expected, r.lower, r.upper, list(r.fired)) == (
            want["score"], want["expected"], want["lower"], want["upper"], want["fired"])


def test_a_state_without_a_section_loads_and_that_part_starts_afresh():
    b = BatchEnsemble(n_series=2, metric_kind="count")
    _run(b)
    st = b.state_of(0)
    parts = _payloads(st)
    assert list(parts) == ["calibration", "spike", "cusum", "seasonal", "likelihood"]
    older = {**st, "data": base64.b64encode(sections.pack(
        [(k, v) for k, v in parts.items() if k != "likelihood"])).decode()}
    c = BatchEnsemble(n_series=1, metric_kind="count")
    assert c.load_state(0, older) == ["likelihood"]
    assert c.members["likelihood"].s["n"][0] == 0 and b.members["likelihood"].s["n"][0] > 0
    again = _payloads(c.state_of(0))
    assert all(again[k] == parts[k] for k in parts if k != "likelihood")


def test_unknown_sections_are_ignored_and_a_section_of_the_wrong_size_starts_afresh():
    b = BatchEnsemble(n_series=1)
    _run(b)
    st = b.state_of(0)
    parts = _payloads(st)
    extra = sections.pack(list(parts.items()) + [("removed-member", b"\x01\x02\x03")])
    c = BatchEnsemble(n_series=1)
    assert c.load_state(0, {**st, "data": base64.b64encode(extra).decode()}) == []
    assert c.state_of(0) == st  # the unknown section is not carried on
    resized = sections.pack([(k, v[:-8] if k == "cusum" else v) for k, v in parts.items()])
    assert c.load_state(0, {**st, "data": base64.b64encode(resized).decode()}) == ["cusum"]
    assert c.members["cusum"].s["n"][0] == 0
    with pytest.raises(ValueError, match="truncated"):
        c.load_state(0, {**st, "data": base64.b64encode(base64.b64decode(st["data"])[:-3]).decode()})


class _Jump(Detector):
    """A toy member: the step from the previous value, in units of 1."""

    name = "jump"

    def _shapes(self):
        return {"n": (), "last": ()}

    def _score(self, y, t):
        z = np.where(self.s["n"] > 0, y - self.s["last"], 0.0)
        return z, self.s["last"].copy(), np.abs(z) >= 5.0

    def _learn(self, y, t, z):
        ok = np.isfinite(y)
        self.s["last"][:] = np.where(ok, y, self.s["last"])
        self.s["n"][:] = np.where(ok, self.s["n"] + 1, self.s["n"])


def test_a_member_added_to_the_specs_names_itself_and_old_states_still_load(monkeypatch):
    old = BatchEnsemble(n_series=1, period=None)
    rng = np.random.default_rng(2)
    for i in range(300):
        old.update([100.0 + rng.normal()], T0 + 60.0 * i)
    saved = old.state_of(0)

    def with_jump(*args, **kwargs):
        specs = default_specs(*args, **kwargs)
        return specs[:2] + [DetectorSpec("jump", _Jump, role="sustained")] + specs[2:]

    monkeypatch.setattr(ensemble, "default_specs", with_jump)
    new = BatchEnsemble(n_series=1, period=None)
    assert new.names == ("spike", "cusum", "jump", "likelihood")
    assert new.load_state(0, saved) == ["jump"]  # no version bump: the new member starts afresh
    new.update([100.0], T0 + 60.0 * 300)
    r = new.update([160.0], T0 + 60.0 * 301).row(0)  # a 60-unit step: the toy member fires too
    assert "jump" in r.fired and r.is_anomaly
    assert list(_payloads(new.state_of(0))) == ["calibration", "spike", "cusum", "jump", "likelihood"]


def test_bulk_states_equal_single_states_with_sections():
    b = BatchEnsemble(n_series=5, metric_kind="latency", calibration="per_detector", novelty=True)
    _run(b, n=50)
    assert b.states_of([4, 0, 2]) == [b.state_of(i) for i in (4, 0, 2)]
    assert list(_payloads(b.state_of(0))) == ["calibration", "spike", "cusum", "seasonal", "likelihood", "tails",
                                              "context", "context.tails"]
    assert len(base64.b64decode(b.state_of(0)["data"])) == b.state_bytes()
