"""Every docstring example in the library packages runs and passes.

(The packages' own folders are not collected by pytest: their modules are imported by their installed
names, as users import them, and each module's examples run here.)
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ["patrol.records", "patrol.preagg", "patrol.detectors", "patrol.models", "patrol.streams", "patrol.sim",
            "patrol.cli"]


def _modules() -> list[str]:
    names = []
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        names.append(mod.__name__)
        names += [m.name for m in pkgutil.walk_packages(mod.__path__, prefix=mod.__name__ + ".")]
    return sorted(names)


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_pass(name):
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.failed == 0


def test_examples_are_found():
    """The collection above sees the library (a wrong package path would make it pass vacuously)."""
    assert {"patrol.records.keys", "patrol.detectors.ensemble", "patrol.models.feedback", "patrol.models.alerting"} <= set(MODULES)
    attempted = sum(doctest.testmod(importlib.import_module(n), optionflags=doctest.ELLIPSIS).attempted
                    for n in ("patrol.records.keys", "patrol.models.feedback", "patrol.models.alerting"))
    assert attempted >= 10
