"""The docstring examples of every detector module run and pass."""
import doctest
import importlib

import pytest

MODULES = ["spike", "changepoint", "seasonal", "ratio", "calibration", "likelihood", "ensemble", "members", "sections", "experimental.bocpd", "experimental.stl"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(f"patrol.detectors.{name}")
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
