# serkit: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORPORA ?= ../shared/corpora
DATA   ?= data

.PHONY: install run serve test default-model benchmark-accuracy benchmark-speed benchmark-load clean

# Install everything (torch pinned to the 2.13.0 CPU wheel; the rest pinned in constraints.txt).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The main job: prepare the corpora, then score held-out clips with the shipped default model.
run: install
	$(BIN)/serkit prepare $(CORPORA) -o $(DATA)/manifest.csv
	$(BIN)/serkit info
	$(BIN)/serkit evaluate --split test $(DATA)/manifest.csv --out $(DATA)/default-model-eval

# The web app and JSON API on http://127.0.0.1:5000 (waitress), with the default model.
serve: install
	$(BIN)/serkit serve --host 127.0.0.1 --port 5000

# The test suite (tests that need ../shared/corpora skip when it is absent).
test: install
	$(BIN)/python -m pytest -q

# Retrain the shipped default model from ../shared/corpora (six emotions, speaker split).
default-model: install
	$(BIN)/serkit prepare $(CORPORA) -o $(DATA)/manifest.csv
	$(BIN)/serkit train $(DATA)/manifest.csv --out runs/default --seed 0
	rm -rf serkit/default_model && cp -r runs/default/bundle serkit/default_model

benchmark-accuracy: install
	$(BIN)/python benchmarks/accuracy.py --corpora $(CORPORA)

benchmark-speed: install
	$(BIN)/python benchmarks/speed.py

benchmark-load: install
	$(BIN)/python benchmarks/load.py

clean:
	rm -rf $(VENV) $(DATA) runs .pytest_cache
