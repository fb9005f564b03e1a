"""Builds the optional compiled hot loop (``preagg._fastloop``); everything else is in pyproject.toml.

The extension is ``optional``: without a C compiler the install still succeeds and the aggregator
runs its pure-Python loop (it logs which one it uses; ``tests/test_fastloop.py`` fails under CI
when the compiled loop is missing, so a broken build cannot go unnoticed there).
"""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # Cython is a build requirement; without it (odd setups) ship the pure loop
    ext_modules = []
else:
    ext_modules = cythonize(
        [Extension("preagg._fastloop", ["preagg/_fastloop.pyx"], extra_compile_args=["-O3"], optional=True)],
        compiler_directives={"language_level": "3"},
    )

setup(ext_modules=ext_modules)
