# Yugong: `make demo` to try it, `make test` to check it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint install clean chromium vendor-web

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

# Browser tests drive Debian's chromium (never a browser build of Playwright's own), with a
# CJK font so zh-CN pages render in screenshots: install them when missing and we can (root
# with apt-get); else the tests skip (fail with CI=true).
BROWSER_DEBS := chromium fonts-wqy-microhei
chromium:
	@if { [ ! -x /usr/bin/chromium ] || [ ! -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; } \
	  && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BROWSER_DEBS) \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BROWSER_DEBS); } \
	  || echo "chromium could not be installed: the browser tests will skip" >&2; \
	fi

test: chromium $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/yugong bench

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# Fetch the vendored web assets again (npm pack) and check them against their VENDOR.md.
vendor-web:
	bash scripts/vendor-web.sh

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
