# cavmae-lite — the two commands a user needs are `make lab` and `make test`.
#   VENV=path              where the virtual environment lives (default .venv)
#   BOOTSTRAP_PYTHON=path  the Python >= 3.10 (with its venv module) that creates it (default python3)
#   PYTHON=path            use an existing interpreter instead, no venv (e.g. an active conda env: PYTHON=python)
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
BOOTSTRAP_PYTHON ?= python3
DATA ?= data/synthetic
NOTEBOOKS := $(wildcard notebooks/*.ipynb)

.PHONY: venv setup lab test data zoo html lint clean

# The virtual environment alone (nothing installed yet: e.g. to put the CPU-only torch in first, see the README).
# scripts/make_venv.sh: a no-op when it works; otherwise it says what is missing and how to fix it, and never leaves
# a half-made $(VENV) behind.
venv:
	@if [ "$(PYTHON)" = "$(VENV)/bin/python" ]; then sh scripts/make_venv.sh "$(BOOTSTRAP_PYTHON)" "$(VENV)"; fi

setup: venv
	@$(PYTHON) scripts/ensure_env.py

data: setup
	@if [ ! -f "$(DATA)/manifest.json" ]; then $(PYTHON) -m cavmae_lite.cli make-data synthetic "$(DATA)" --cache; fi

# As root (a container, a cloud VM) JupyterLab refuses to start without --allow-root: pass it only then.
JUPYTER_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

lab: data
	$(PYTHON) -m jupyter lab $(JUPYTER_ROOT) notebooks/

# Retrain the shipped tutorial models (cavmae_lite/weights/tiny*.safetensors + cards) with their recorded recipes.
zoo: data
	$(PYTHON) -m cavmae_lite.cli zoo build --name tiny
	$(PYTHON) -m cavmae_lite.cli zoo build --name tiny-mask75
	$(PYTHON) -m cavmae_lite.cli zoo build --name tiny-sync
	$(PYTHON) scripts/paste_recipe_table.py

# Unit tests, then every notebook executed by nbmake in fast mode (small data, few steps), with the quizzes'
# solutions (notebooks/solutions/) put in for the blank answers, so that a wrong solution turns the run red.
test: setup
	CAVMAE_FAST=1 CAVMAE_QUIZ_SOLUTIONS=$(CURDIR)/notebooks/solutions $(PYTHON) -m pytest tests $(if $(NOTEBOOKS),--nbmake --nbmake-timeout=600 $(NOTEBOOKS))

# Executed copies of the notebooks as HTML (for reading without running them) in html/ (git-ignored), as d2l
# publishes its chapters: full mode (CAVMAE_FAST=0: the real data, the real training budgets, with the assertions
# on the claims the prose makes), the quizzes' solutions put in. Notebooks 06 and 07 train for many minutes the
# first time (see docs/notebooks.md); finished runs and cached fine-tunes are reused by the next build.
html: data
	CAVMAE_FAST=0 CAVMAE_QUIZ_SOLUTIONS=$(CURDIR)/notebooks/solutions $(PYTHON) -m jupyter nbconvert --to html \
		--execute --ExecutePreprocessor.timeout=-1 --output-dir html $(NOTEBOOKS)

lint: setup
	$(PYTHON) -m ruff check cavmae_lite tests benchmarks

clean:
	rm -rf html .pytest_cache
