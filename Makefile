# The README's two commands. Both create .venv if missing and install the project into it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(PY):
	$(shell command -v $(PYTHON) >/dev/null 2>&1 && echo $(PYTHON) || echo python3) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pole demo

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m contracts.build --check
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench.throughput
	$(PY) -m bench.sml_cost
	$(PY) -m bench.verify_vs_train

clean:
	rm -rf $(VENV) build *.egg-info
