"""Builds the optional compiled extensions; everything else is in pyproject.toml.

* ``patrol.preagg._fastloop``: the pre-aggregation hot loop (pure-Python loop without it).
* ``patrol.streams._rdbatch``: the preagg worker's consumer, librdkafka's batch API driven directly
  (confluent-kafka's ``Consumer`` without it). It needs no librdkafka headers or library at build
  time: it binds at import to the librdkafka confluent_kafka loaded (see the module doc).

Both are ``optional``: without a C compiler the install still succeeds and the worker runs the
fallbacks (it logs which ones; ``tests/test_fastloop.py`` and ``tests/test_rdbatch.py`` fail under
CI when an extension is missing, so a broken build cannot go unnoticed there).
"""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # Cython is a build requirement; without it (odd setups) ship the pure loop
    ext_modules = []
else:
    ext_modules = cythonize(
        # -ffp-contract=off: the compiled DDSketch build must sum latencies exactly as the pure path
        # does; a fused multiply-add (allowed by default on some targets or with -march) changes
        # the last bit and so the sketch bytes a replay must reproduce.
        [Extension("patrol.preagg._fastloop", ["preagg/_fastloop.pyx"], extra_compile_args=["-O3", "-ffp-contract=off"],
                   depends=["preagg/_tables.pxi", "preagg/_formats.pxi"], optional=True),
         Extension("patrol.streams._rdbatch", ["streams/_rdbatch.pyx"], extra_compile_args=["-O3"], libraries=["dl"],
                   optional=True)],
        compiler_directives={"language_level": "3"},
    )

setup(ext_modules=ext_modules)
