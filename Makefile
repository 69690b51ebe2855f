# Two entry points (see README): `make report` (the whole default study -> outputs/cpu/report.html)
# and `make test`. Both create .venv and install what is needed first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup data report test test-all lint lab clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS) || $(PY) -m pip install -q torch torchvision
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $@

setup: $(VENV)/.installed data

# Fashion-MNIST from Debian's package where apt-get is available as root; otherwise the loader
# falls back to torchvision's download, or says how to get the files.
data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && \
	   command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || \
	  echo "could not install dataset-fashion-mnist; the loader will try torchvision's download"; \
	fi

report: setup
	$(VENV)/bin/bprior report --profile $(PROFILE)

# every test but those marked slow, on every core (pytest-xdist, at most 4 workers; the tests
# that share the smoke priors in one worker); test-all then runs the slow ones in one process,
# so the smoke study they share is built once (CI). OpenMP's threads sleep while they wait:
# a test that computes with 2 threads beside another worker otherwise spun for minutes.
XDIST := -n auto --maxprocesses=4 --dist loadgroup

test: setup
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q -m "not slow" $(XDIST)

test-all: test
	$(PY) -m pytest -q -m slow

# JupyterLab with the explorer (notebooks/explore.ipynb) over the stored results of PROFILE
$(VENV)/.lab: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[lab]'
	touch $@

lab: setup $(VENV)/.lab
	$(VENV)/bin/jupyter lab notebooks/explore.ipynb

lint: setup
	$(VENV)/bin/ruff check bprior_core tests

clean:
	rm -rf $(VENV) outputs/smoke
