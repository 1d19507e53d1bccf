# `make demo` and `make test` set everything up on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The releases this project is tested with; pyproject admits any torch >= 2.1.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: setup test demo demo-long clean-demo

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests

demo: $(STAMP)
	$(PY) scripts/demo.py

# The pipeline on eight colours, trained ten times longer (about 85 minutes on two CPU cores; shapes right for 43 %).
demo-long: $(STAMP)
	$(PY) scripts/demo.py --long

clean-demo:
	rm -rf data/shapes data/shapes-long output/demo output/demo-long
