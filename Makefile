# ingress-patrol: every target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test redis bench clean help

help:
	@echo "make demo     run the whole pipeline locally with a live view (PATROL_DEMO_DURATION=60 to stop by itself)"
	@echo "make test     install everything the tests need (venv, packages, redis-server) and run them"
	@echo "make install  build .venv with the project, its tests and its benchmarks"
	@echo "make bench    run the benchmarks, JSON into out/"

install: $(STAMP)

# setup.py / the .pyx: the compiled extensions are rebuilt by the editable install when they change
$(STAMP): pyproject.toml setup.py preagg/_fastloop.pyx preagg/_tables.pxi preagg/_formats.pxi streams/_rdbatch.pyx
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ingress-patrol needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench,experimental]'
	@touch $@

redis:
	@bash scripts/ensure-redis.sh

demo: install
	$(VENV)/bin/patrol demo

test: install redis
	$(VENV)/bin/pytest

bench: install
	@mkdir -p out
	$(PY) -m benchmarks.detectors --json out/detectors.json
	$(PY) -m benchmarks.nab --json out/nab.json
	$(PY) -m benchmarks.preagg --json out/preagg.json
	$(PY) -m benchmarks.detect --json out/detect.json
	$(PY) -m benchmarks.feedback --json out/feedback.json

clean:
	rm -rf $(VENV) out .pytest_cache
