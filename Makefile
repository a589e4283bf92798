# Two entry points: `make lab` (the course) and `make test` (everything CI runs).
# Both create .venv on first use with Python 3.11+ (python3 on PATH, or PYTHON=...).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: lab test test-fast doctor clean-venv

$(BIN)/.ftcourse-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

lab: $(BIN)/.ftcourse-installed
	$(BIN)/ftcourse doctor
	$(BIN)/ftcourse lessons ftcourse-lessons
	$(BIN)/jupyter lab ftcourse-lessons/

# Your own copies of the lessons in ftcourse-lessons/ (copies only what is missing, never overwrites).
.PHONY: lessons
lessons: $(BIN)/.ftcourse-installed
	$(BIN)/ftcourse lessons ftcourse-lessons

# One pytest-xdist worker per core, one torch thread each (conftest.py); a test module or a notebook stays
# whole in one worker (--dist loadscope), so module fixtures and a notebook's kernel are never split. A worker that dies
# (a hung test, ended by the watchdog in conftest.py) stops the run: xdist would otherwise re-run that test on fresh
# workers, each of which hangs again.
XDIST := -n auto --dist loadscope --max-worker-restart=0
test: $(BIN)/.ftcourse-installed
	$(BIN)/python -m pytest $(XDIST)

# The same course on the oldest supported set: .venv-oldest with every dependency at its lower bound in
# pyproject.toml (scripts/oldest_constraints.py pins them all at once), then the unit tests and every lesson
# under nbval there (the claim tests' seed studies run in `make test` only). CI runs both.
OLDEST_VENV ?= .venv-oldest
$(OLDEST_VENV)/.ftcourse-installed: pyproject.toml scripts/oldest_constraints.py
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --upgrade pip
	$(PYTHON) scripts/oldest_constraints.py > $(OLDEST_VENV)/constraints.txt
	$(OLDEST_VENV)/bin/python -m pip install -c $(OLDEST_VENV)/constraints.txt -e ".[test]"
	touch $@

.PHONY: test-oldest
test-oldest: $(OLDEST_VENV)/.ftcourse-installed
	$(OLDEST_VENV)/bin/ftcourse doctor
	$(OLDEST_VENV)/bin/python -m pytest $(XDIST) tests/unit tests/notebooks lessons

# Quick local loop: the unit tests only (no claim tests over seeds, no notebooks). CI runs `make test`.
test-fast: $(BIN)/.ftcourse-installed
	$(BIN)/python -m pytest -m "not slow" tests/unit tests/notebooks

doctor: $(BIN)/.ftcourse-installed
	$(BIN)/ftcourse doctor

clean-venv:
	rm -rf $(VENV) $(OLDEST_VENV)

# Every claim re-trained on seeds 0-5 and compared with the shipped files (each holds seeds 0-9): many hours on
# 2 cores (the recipe's ablation alone trains about 80 CPU-minutes a seed). `make test` re-trains parts of seed 0
# (tests/claims/claim_seeds.py) and checks every shipped seed's claims.
.PHONY: claims
claims: $(BIN)/.ftcourse-installed
	FTCOURSE_CLAIM_SEEDS=0,1,2,3,4,5 $(BIN)/python -m pytest tests/claims

# Offline reveal.js decks of the lessons in build/slides/ (open build/slides/01_*.slides.html; arrows move).
# reveal.js, require.js, jQuery and MathJax 2 come from npm into build/slides/node_modules, not from a CDN.
SLIDES_DIR := build/slides
SLIDES_JS := $(SLIDES_DIR)/node_modules/mathjax/MathJax.js
.PHONY: slides
$(SLIDES_JS):
	npm install --prefix $(SLIDES_DIR) --no-audit --no-fund reveal.js@4 requirejs@2 jquery@3 mathjax@2
slides: $(BIN)/.ftcourse-installed $(SLIDES_JS)
	$(BIN)/jupyter nbconvert --to slides lessons/*.ipynb --output-dir $(SLIDES_DIR) \
	    --TemplateExporter.extra_template_basedirs=slides/templates --template ftcourse_reveal \
	    --TagRemovePreprocessor.enabled=True --TagRemovePreprocessor.remove_input_tags=hide-input \
	    --SlidesExporter.reveal_url_prefix=node_modules/reveal.js \
	    --SlidesExporter.require_js_url=node_modules/requirejs/require.js \
	    --SlidesExporter.jquery_url=node_modules/jquery/dist/jquery.min.js \
	    --SlidesExporter.mathjax_url="node_modules/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe" \
	    --SlidesExporter.reveal_scroll=True --SlidesExporter.reveal_width=1280 --SlidesExporter.reveal_height=720

# The course site: a static HTML book of the lessons as committed (outputs and figures, nothing re-run), the
# README's lesson table as front page, the instructors' guide and the API from the docstrings, in build/site/.
# Offline: furo bundles its assets, MathJax 3 comes from npm into build/site-assets (no CDN). Publish by copying
# build/site/ to any static host.
SITE_MATHJAX := build/site-assets/node_modules/mathjax/es5/tex-chtml.js
.PHONY: site
$(SITE_MATHJAX):
	npm install --prefix build/site-assets --no-audit --no-fund mathjax@3
site: $(BIN)/.ftcourse-installed $(SITE_MATHJAX)
	$(BIN)/python -m pip install -q -e ".[site]"
	$(BIN)/python scripts/build_site.py

# Every lesson run in JupyterLab in a real browser (Debian's chromium driven by Playwright), and the
# offline deck of every lesson at 1280x720 (no slide taller than the screen), and the course site (`make site`): every
# page, asset, figure and link; screenshots in build/browser/. Needs `apt-get install chromium`.
# Two workers, each with its own JupyterLab and Chromium, kernels on one torch thread (conftest.py): two
# lessons at a time: 481 s on this 2-core machine (2026-11-30). One lesson alone: 02 took 106 s with 2 threads, 136 with 1.
.PHONY: browser-test
browser-test: $(BIN)/.ftcourse-installed slides site
	$(BIN)/python -m pip install -q -e ".[browser]"
	rm -f build/browser/report.txt
	$(BIN)/python -m pytest -o addopts="-p no:cacheprovider" -n 2 --dist load --max-worker-restart=0 tests/browser
	cat build/browser/report.txt
