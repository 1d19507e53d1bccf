# `make demo` and `make test` set everything up on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The releases this project is tested with; pyproject admits any torch >= 2.2 (nn.Module.compile).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo demo-long clean-demo serve container-test ablation

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test,serve,lint,ablation]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests

# ruff (lint, and the format check) and the import contract (pyproject's [tool.importlinter]).
lint: $(STAMP)
	$(VENV)/bin/ruff check code tests scripts
	$(VENV)/bin/ruff format --check code tests scripts
	cd code && ../$(VENV)/bin/lint-imports ../pyproject.toml

demo: $(STAMP)
	$(PY) scripts/demo.py

# The pipeline on eight colours, trained ten times longer (about 85 minutes on two CPU cores; shapes right for 43 %).
demo-long: $(STAMP)
	$(PY) scripts/demo.py --long

# The demo's generator over HTTP (docs/serving.md): the web page at http://127.0.0.1:8080/.
SERVE_CFG ?= cfg/eval_shapes.yml
serve: $(STAMP)
	@for f in output/demo/AttnGAN/Model/netG_epoch_4.pth output/demo/DAMSM/Model/text_encoder4.pth data/shapes/captions.pickle; do \
		test -f $$f || { echo "make serve: $$f is missing: run 'make demo' first (it trains the generator served here)" >&2; exit 2; }; done
	$(VENV)/bin/attngan-serve --cfg $(SERVE_CFG) --gpu -1

# Build docker/Dockerfile's image on a Debian base made by debootstrap and run it (docs/serving.md,
# A container): needs root and apt-get install debootstrap podman runc.
container-test: $(STAMP)
	$(PY) scripts/container_test.py

# The ablation study (docs/ablation.md): the DAMSM loss weight and TEXT_FC on the demo's recipe,
# two runs at a time, one per core; the same command continues an interrupted study.
ABLATION_ARGS ?= --jobs 2
ablation: $(STAMP)
	$(PY) scripts/ablation.py $(ABLATION_ARGS)

clean-demo:
	rm -rf data/shapes data/shapes-long output/demo output/demo-long
