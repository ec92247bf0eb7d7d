# serkit: the two commands a newcomer needs are `make run` and `make test` (`make serve` for the page).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORPORA ?= ../shared/corpora
DATA   ?= data
# PyTorch's CPU-only wheels (torch 2.13.0+cpu, ~200 MB) instead of PyPI's Linux build, which pulls
# GBs of CUDA libraries. The index is added only when it answers within 3 s, so a machine that
# cannot reach it installs from pip's usual index without waiting on retries. TORCH_INDEX= (empty)
# skips the index and the check (e.g. to get a CUDA build, or where pip has its own wheelhouse).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# Extras of the two installs: running serkit's main job (the core serves; eval adds the reports'
# scikit-learn and matplotlib), and running its tests (dev: train's torch, Lightning, transformers
# and ONNX exporter, plus pytest, Playwright, librosa, silero-vad).
RUN_EXTRAS  ?= eval
TEST_EXTRAS ?= dev

.PHONY: install install-test run serve test default-model fast-model benchmark-accuracy benchmark-speed benchmark-load clean

# Prints pip's option for TORCH_INDEX when it answers within 3 s, else nothing (and a note on stderr).
define TORCH_PROBE
import sys, threading, urllib.request
url, ok = sys.argv[1], []
def probe():
    try:
        urllib.request.urlopen(url, timeout=3)
        ok.append(url)
    except (OSError, ValueError):
        pass
t = threading.Thread(target=probe, daemon=True)
t.start()
t.join(3)
print(f"--extra-index-url {url}" if ok else "")
if not ok:
    print(f"note: {url} cannot be reached (3 s check); torch comes from pip's usual index", file=sys.stderr)
endef
export TORCH_PROBE
# pip with the constraints, and PyTorch's index (probed) only for extras that bring torch
comma := ,
with_torch = $(filter train dev onnx,$(subst $(comma), ,$(1)))
pip_install = $(BIN)/pip install -q -c constraints.txt $(if $(and $(TORCH_INDEX),$(call with_torch,$(1))),$$($(PYTHON) -c "$$TORCH_PROBE" "$(TORCH_INDEX)"))
extras = $(if $(1),[$(1)])

$(BIN)/pip:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# What running serkit needs (versions pinned in constraints.txt).
$(VENV)/.installed-run: pyproject.toml constraints.txt | $(BIN)/pip
	$(call pip_install,$(RUN_EXTRAS)) -e '.$(call extras,$(RUN_EXTRAS))'
	touch $@

# ...plus what its tests need.
$(VENV)/.installed-test: pyproject.toml constraints.txt | $(BIN)/pip
	$(call pip_install,$(TEST_EXTRAS)) -e '.$(call extras,$(TEST_EXTRAS))'
	touch $@

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

# The main job: prepare the corpora, then score held-out clips with the shipped default model.
run: install
	$(BIN)/serkit prepare $(CORPORA) -o $(DATA)/manifest.csv
	$(BIN)/serkit info
	$(BIN)/serkit evaluate --split test $(DATA)/manifest.csv --out $(DATA)/default-model-eval

# The web app and JSON API on http://127.0.0.1:5000/ (waitress), with the shipped models (default, fast).
serve: install
	$(BIN)/serkit serve --host 127.0.0.1 --port 5000

# The test suite (tests that need ../shared/corpora skip when it is absent).
test: install-test
	$(BIN)/python -m pytest -q

# Retrain the shipped default model from ../shared/corpora (six emotions, speaker split).
# --force: runs/default and runs/fast are these targets' own run folders, trained over each time.
default-model: install-test
	$(BIN)/serkit prepare $(CORPORA) -o $(DATA)/manifest.csv
	$(BIN)/serkit train $(DATA)/manifest.csv --out runs/default --force --model encoder_head --seed 0 --balance-corpora
	rm -rf serkit/default_model && cp -r runs/default/bundle serkit/default_model

# Retrain the shipped fast model on the same split: three CNN-LSTMs (seeds 0, 1, 2; 3 in 10 training
# clips in a simulated room, --rooms) joined by serkit ensemble; it ships as its ONNX int8 export (no torch),
# whose card then gets the test figures of that int8 graph (evaluate --card), not of the PyTorch ensemble.
fast-model: install-test
	$(BIN)/serkit prepare $(CORPORA) -o $(DATA)/manifest.csv
	for seed in 0 1 2; do $(BIN)/serkit train $(DATA)/manifest.csv --out runs/fast-seeds/seed$$seed --force --model cnn_lstm --epochs 24 --patience 8 --seed $$seed --split-seed 0 --no-corpus-label-mask --rooms --refit-epochs || exit 1; done
	$(BIN)/serkit ensemble runs/fast-seeds/seed0 runs/fast-seeds/seed1 runs/fast-seeds/seed2 --out runs/fast --force
	rm -rf serkit/fast_model && $(BIN)/serkit export runs/fast/bundle --onnx --int8-only -o serkit/fast_model
	$(BIN)/serkit evaluate serkit/fast_model $(DATA)/manifest.csv --split test --card --out runs/fast/eval-shipped --force

benchmark-accuracy: install-test
	$(BIN)/python benchmarks/accuracy.py --corpora $(CORPORA)

benchmark-speed: install-test
	$(BIN)/python benchmarks/speed.py

benchmark-load: install
	$(BIN)/python benchmarks/load.py

clean:
	rm -rf $(VENV) $(DATA) runs .pytest_cache
