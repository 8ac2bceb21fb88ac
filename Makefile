# Two commands do all the set-up: `make train` and `make test` create .venv and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PIP_ARGS ?=
ARGS ?=
BIN := $(VENV)/bin

VISION_VENV ?= .venv-vision
SITE_ASSETS := docs/javascripts/vendor/VERSION

.PHONY: train test test-vision bench report figures docs browser gpu lint format clean

train: $(VENV)/.installed
	$(BIN)/python -m lr_from_scratch.train $(ARGS)

test: $(VENV)/.installed $(SITE_ASSETS) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site
	@echo "The kernels as plain Python first (NUMBA_DISABLE_JIT=1), so every line of them runs; the CUDA kernels"
	@echo "in Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1; on a GPU machine the main run tests them there); then all,"
	@echo "a process per core (-n auto):"
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_kernels.py
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q -p no:cacheprovider -n auto tests/test_cuda.py
	$(BIN)/python -m pytest --benchmark-disable -n auto $(ARGS)

# torchvision's own MNIST pipeline, in a second environment: PyPI's torchvision does not import beside the CPU
# torch of .venv, so this one takes the pair in constraints-vision.txt (about 5.5 GB, from local files here).
test-vision: $(VISION_VENV)/.installed
	$(VISION_VENV)/bin/python -m pytest --benchmark-disable -p no:cacheprovider tests/test_torchvision.py $(ARGS)

$(VISION_VENV)/.installed: pyproject.toml constraints-vision.txt
	$(PYTHON) -m venv $(VISION_VENV)
	$(VISION_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VISION_VENV)/bin/python -m pip install --quiet $(PIP_ARGS) -c constraints-vision.txt -e '.[dev,vision]'
	touch $@

# Every figure of the docs, from the project's own commands (about three minutes, the benchmarks page included;
# the drawing page's picture needs Debian's Chromium, as the site's tests do).
figures: $(VENV)/.installed $(SITE_ASSETS) browser
	rm -rf runs/docs-figures
	$(BIN)/python scripts/model_diagram.py
	$(BIN)/python -m lr_from_scratch.explore --out docs/figures/explore --no-progress
	$(BIN)/python -m lr_from_scratch.train --out runs/docs-figures --no-progress | tee docs/figures/training/train_output.txt
	cp runs/docs-figures/metrics.json runs/docs-figures/model.npz docs/figures/training/
	$(BIN)/python scripts/quote_outputs.py
	$(BIN)/python scripts/patience.py
	$(BIN)/python -m lr_from_scratch.evaluate runs/docs-figures/model.npz --out docs/figures/evaluation --no-progress
	mkdir -p docs/figures/training && cp runs/docs-figures/curves.png docs/figures/training/curves.png
	$(BIN)/python -m lr_from_scratch.lr_find --out docs/figures/training
	$(BIN)/python -m lr_from_scratch.sweep --out docs/figures/training
	$(BIN)/python -m benchmarks.report --out docs --no-progress
	$(BIN)/python -m lr_from_scratch.demo runs/docs-figures --out docs/figures/demo --no-progress
	$(BIN)/python scripts/demo_screenshot.py

# On a GPU machine (no network, no pip: it runs from the checkout): the CUDA tests and docs/benchmarks-gpu.md.
gpu:
	scripts/gpu.sh $(ARGS)

# The benchmarks page alone, docs/benchmarks.md (about two minutes).
report: $(VENV)/.installed
	$(BIN)/python -m benchmarks.report --out docs

# The site. First what the chapters take from elsewhere: the code they show (from the source) and the
# notebooks made from them; the tests fail when either is out of date.
docs: $(VENV)/.installed $(SITE_ASSETS)
	$(BIN)/python scripts/show_code.py
	$(BIN)/python scripts/notebooks.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

# The site's JavaScript (MathJax, iframe-worker), pinned and checked, from the npm registry: no CDN at run time.
$(SITE_ASSETS): scripts/vendor_assets.py $(VENV)/.installed
	$(BIN)/python scripts/vendor_assets.py

# Debian's Chromium and its driver, for the site's browser tests (tests/test_site.py); installed as root only.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	  else echo "tests/test_site.py needs Debian's chromium and chromium-driver: sudo apt-get install chromium chromium-driver"; fi; \
	fi

bench: $(VENV)/.installed
	$(BIN)/python -m pytest --benchmark-only -q $(ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_ARGS) -c constraints.txt -e '.[dev,docs,peers,cuda-compile]'
	touch $@

# Numba's compiled kernels (*.nbi, *.nbc) live in __pycache__ beside the source; an edit that moves a kernel's
# line leaves the old entries behind, so clean removes the caches whole.
clean:
	rm -rf $(VENV) $(VISION_VENV) .pytest_cache .benchmarks build *.egg-info
	find lr_from_scratch torch_ref benchmarks scripts tests -name __pycache__ -type d -prune -exec rm -rf {} +
