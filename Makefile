# The README's two commands. Both create .venv if missing and install the project into it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install browser bench clean

$(PY):
	$(shell command -v $(PYTHON) >/dev/null 2>&1 && echo $(PYTHON) || echo python3) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The dashboard's browser tests (tests/dashboard) drive Debian's Chromium through Playwright
# (a test extra); nothing downloads a browser. A no-op when /usr/bin/chromium exists.
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else \
	    echo "tests/dashboard need Chromium: sudo apt-get install -y chromium" >&2; exit 1; \
	  fi; }

demo: $(STAMP)
	$(VENV)/bin/pole demo

test: $(STAMP) browser
	$(VENV)/bin/lint-imports
	$(PY) -m contracts.build --check
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench.throughput
	$(PY) -m bench.sml_cost
	$(PY) -m bench.verify_vs_train
	$(PY) -m bench.verify_scale
	$(PY) -m bench.training_overhead
	$(PY) -m bench.ipfe
	$(PY) -m bench.propagation
	$(PY) -m bench.block_intervals

clean:
	rm -rf $(VENV) build *.egg-info
