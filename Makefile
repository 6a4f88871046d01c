# Yugong: `make demo` to try it, `make test` to check it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# The ThingsBoard SDK used in tests ships its own copy of the paho package; make the
	@# platform's declared paho-mqtt the one that is installed, whatever order pip chose.
	$(BIN)/pip install --quiet --force-reinstall --no-deps "$$($(BIN)/python -c 'import importlib.metadata as m; print("paho-mqtt==" + m.version("paho-mqtt"))')"
	@# A Sparkplug B implementation that is not ours, to check ours against in tests. It pins
	@# paho-mqtt<2 but works with 2.x, so it goes in without its dependencies.
	$(BIN)/pip install --quiet --no-deps "pysparkplug==0.6.1"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/yugong demo

test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/yugong bench

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
