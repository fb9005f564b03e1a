"""ingress-patrol: online anomaly detectors (pure, no I/O).

Quick use::

    from patrol import detectors
    det = detectors.default_ensemble(metric_kind="latency", direction="up")
    r = det.update(value, t)          # score, then learn
    if r.score >= detectors.DEFAULT_THRESHOLD: ...

Batch (many series, one window at a time)::

    b = detectors.BatchEnsemble(n_series=10_000)
    res = b.update(values, t)         # arrays, identical to the one-point path

Detectors outside the default ensemble live in ``detectors.experimental``.
"""
from .base import Detector, DetectorResult
from .calibration import TailCalibrator
from .changepoint import CusumDetector
from .ensemble import (DEFAULT_THRESHOLD, METRIC_KINDS, STATE_VERSION, BatchEnsemble, BatchResult, Ensemble, Result,
                       default_ensemble)
from .likelihood import ResidualLikelihood
from .ratio import RatioDetector
from .seasonal import SeasonalDetector
from .spike import SpikeDetector

__all__ = ["DEFAULT_THRESHOLD", "METRIC_KINDS", "STATE_VERSION", "BatchEnsemble", "BatchResult", "CusumDetector",
           "Detector", "DetectorResult", "Ensemble", "RatioDetector", "ResidualLikelihood", "Result", "SeasonalDetector",
           "SpikeDetector", "TailCalibrator", "default_ensemble"]

from .context_novelty import ContextNoveltyDetector  # noqa: E402  (pattern novelty, CAD OSE family; not in the ensemble yet)

__all__ += ["ContextNoveltyDetector"]
