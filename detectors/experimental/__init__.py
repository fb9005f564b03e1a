"""Detectors outside the default ensemble: kept, tested and importable, but not used by the service.

``BOCPDDetector`` (Bayesian online changepoint detection) and ``STLDetector`` (a scheduled statsmodels STL
refit; needs the ``experimental`` extra: ``pip install 'ingress-patrol[experimental]'``). A detector
moves into ``detectors/`` proper when the out-of-fold protocol (docs/nab.md) says the ensemble gains from it.
"""

from .bocpd import BOCPDDetector
from .stl import STLDetector

__all__ = ["BOCPDDetector", "STLDetector"]
