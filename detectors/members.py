"""What an ensemble is made of: a list of detector specs, one per member.

A :class:`DetectorSpec` names a detector class, its parameters and how the ensemble uses what it
returns (its :class:`~detectors.base.Forecast`): as a *point* detector (its evidence does not count
for a value inside the published band), a *sustained*-change detector (it may fire inside the band),
a detector of *residuals* (it reads other members' residuals), or a *pattern* detector (novel
patterns of the value, calibrated against the series' own rate of novelty). Its ``tag`` is its name
in ``Result.fired`` and the tag of its section in the packed state, so adding a member needs no
state version: a state without its section loads and the new member starts afresh.

Examples
--------
>>> [s.tag for s in default_specs("gauge")]
['spike', 'cusum', 'seasonal', 'likelihood']
>>> [s.tag for s in default_specs("ratio", novelty=True)]
['ratio', 'likelihood', 'context']
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .changepoint import CusumDetector
from .context_novelty import ContextNoveltyDetector
from .likelihood import ResidualLikelihood
from .ratio import RatioDetector
from .seasonal import SeasonalDetector
from .spike import SpikeDetector

ROLES = ("point", "sustained", "residuals", "pattern")


@dataclass(frozen=True)
class DetectorSpec:
    """One member of an ensemble.

    Parameters
    ----------
    tag : str
        Its name in ``fired`` and the tag of its state section (unique in an ensemble).
    factory : type
        A :class:`~detectors.base.Detector` subclass; built as ``factory(n_series=n, **params)``.
    params : dict
        Constructor arguments.
    role : str
        ``"point"``: a residual detector whose evidence does not count inside the band;
        ``"sustained"``: a residual detector that may fire inside it (drifts, level shifts);
        ``"residuals"``: reads the residuals ``z`` of the members in ``reads`` (one channel each; a
        missing member gives 0) and returns its own surprise (``-log10 p``);
        ``"pattern"``: scores the value's pattern; its novelty ``-log10(1 - novelty)`` is calibrated by
        a tail model of its own (state section ``tag + ".tails"``).
    band : bool
        Its forecast may set the published band (the warm one with the smallest scale wins).
    deseasonalised : bool
        It sees the value minus the seasonal component (of the member with ``seasonal=True``).
    seasonal : bool
        It provides ``component(t)``: the seasonal part other members have removed, and the noise of
        the profile at this phase, which floors the scale of the others' forecasts.
    reads : tuple of str
        For ``role="residuals"``: the members whose residuals it reads.
    """

    tag: str
    factory: type
    params: dict = field(default_factory=dict)
    role: str = "point"
    band: bool = False
    deseasonalised: bool = False
    seasonal: bool = False
    reads: tuple = ()

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")

    def build(self, n_series: int):
        return self.factory(n_series=n_series, **self.params)


def scale_floors(metric_kind: str) -> dict:
    """Scale floor ``rel_floor * |level| + abs_floor`` of the metric's transformed values: Anscombe
    counts have unit variance (floor 1), log latencies 1%, gauges 0.1% of their level."""
    if metric_kind == "count":
        return dict(rel_floor=0.0, abs_floor=1.0)
    if metric_kind == "latency":
        return dict(rel_floor=0.0, abs_floor=0.01)
    return dict(rel_floor=1e-3, abs_floor=1e-9)


def default_specs(metric_kind: str = "gauge", period: float | None = 86400.0, n_slots: int = 48,
                  weekly: bool = True, tz_offset: float = 0.0, calibration: str = "pooled",
                  novelty: bool = False) -> list[DetectorSpec]:
    """The default ensemble's members for one metric kind (see :class:`~detectors.ensemble.BatchEnsemble`)."""
    floors = scale_floors(metric_kind)
    if metric_kind == "ratio":
        specs = [DetectorSpec("ratio", RatioDetector, role="point", band=True)]
    else:
        # per-detector calibration needs the burst-decay rule (see SpikeDetector.between_is_normal)
        specs = [DetectorSpec("spike", SpikeDetector, dict(between_is_normal=calibration != "pooled", **floors),
                              role="point", band=True, deseasonalised=True),
                 DetectorSpec("cusum", CusumDetector, dict(floors), role="sustained", deseasonalised=True)]
        if period:
            specs.append(DetectorSpec("seasonal", SeasonalDetector,
                                      dict(period=period, n_slots=n_slots, weekly=weekly, tz_offset=tz_offset,
                                           **floors), role="point", band=True, seasonal=True))
    # EWMA of the fast model's residual (~20 points) and of the seasonal one (~50: the seasonal model's
    # level time constant is one period, so its residuals stay correlated over longer stretches)
    specs.append(DetectorSpec("likelihood", ResidualLikelihood, dict(n_channels=2, short_rate=(0.05, 0.02)),
                              role="residuals", reads=(specs[0].tag, "seasonal")))
    if novelty:
        specs.append(DetectorSpec("context", ContextNoveltyDetector, role="pattern"))
    return specs
