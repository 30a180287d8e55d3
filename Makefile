# kseg: `make demo` and `make test` work on a fresh machine; both install what they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
KSEG   := $(VENV)/bin/kseg
STAMP  := $(VENV)/.kseg-installed
DEMO   ?= demo-runs

.PHONY: install test demo bench lint clean

install: $(STAMP)

# Re-install only when the package metadata changes.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,jax]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

# Train both networks briefly on the embedded synthetic scenes, then print Table I and II.
demo: install
	$(KSEG) data check
	$(KSEG) fit --all --epochs 3 --patch 64 --grid 2x2 --batch-size 4 --runs $(DEMO)
	$(KSEG) eval --all --runs $(DEMO) --splits val,test
	$(KSEG) report --runs $(DEMO)

bench: install
	$(KSEG) bench --json bench.json

lint: install
	$(VENV)/bin/ruff check kseg tests examples

clean:
	rm -rf $(VENV) $(DEMO) runs bench.json *.egg-info
