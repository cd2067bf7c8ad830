# pesdata — set-up, demo, tests and benchmarks. `make demo` and `make test` do everything on a
# fresh machine: create .venv, install torch (CPU, pinned) first, then the project.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
DEMO := demo-out

.PHONY: install demo test bench lint schemas clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: install
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(PY) -m pesdata.demo $(DEMO)
	@echo "--- 1. curate an EMT molecular-dynamics run of Cu into a new store"
	$(BIN)/pesdata curate $(DEMO)/store $(DEMO)/cu_md.extxyz --method EMT --group md-300K -m "Cu MD at 300 K"
	$(BIN)/pesdata tag $(DEMO)/store md-only
	@echo "--- 2. a second batch: 12 new cells; 8 duplicates = 5 exact copies of MD frames,"
	@echo "       1 copy with a different energy (a conflict: stored label kept) and the 2 cells"
	@echo "       that were unlabelled, now with labels (relabelled); a new per-atom array (tags)"
	@echo "       adds a column first (its own version)"
	$(BIN)/pesdata curate $(DEMO)/store $(DEMO)/cu_more.extxyz --method EMT
	@echo "--- 3. a broken batch (NaN forces, overlapping atoms) is rejected whole: nothing written"
	-$(BIN)/pesdata curate $(DEMO)/store $(DEMO)/cu_broken.extxyz --method EMT
	@echo "--- 4. ... or its valid frames committed with --quarantine"
	$(BIN)/pesdata curate $(DEMO)/store $(DEMO)/cu_broken.extxyz --method EMT --quarantine
	$(BIN)/pesdata tag $(DEMO)/store demo-v1
	$(BIN)/pesdata log $(DEMO)/store
	$(BIN)/pesdata info $(DEMO)/store --version demo-v1
	$(BIN)/pesdata diff $(DEMO)/store md-only demo-v1
	$(BIN)/pesdata export $(DEMO)/store $(DEMO)/cu_curated.extxyz --version demo-v1
	$(PY) -c "import pesdata; print(pesdata.open_store('$(DEMO)/store').read('demo-v1').to_pandas().describe())"
	@echo "--- 5. a random hold-out split pinned to demo-v1, an HDNN on its train part, its test errors"
	$(BIN)/pesdata split $(DEMO)/store --name demo-holdout --strategy holdout --test-size 0.2 --seed 0 --version demo-v1
	$(BIN)/pesdata train $(DEMO)/store --split demo-holdout --out $(DEMO)/model --epochs 150
	$(BIN)/pesdata evaluate $(DEMO)/store@demo-v1 --model $(DEMO)/model
	@echo "--- 6. select 4 of 14 unlabelled candidates (6 at 300 K, 8 from 1200 K MD) by novelty and"
	@echo "       diversity, label them with EMT, import the labels as a new version"
	$(BIN)/pesdata select $(DEMO)/store --candidates $(DEMO)/cu_candidates.extxyz --budget 4 --method EMT --name demo-select --out $(DEMO)/queue
	$(BIN)/pesdata label run $(DEMO)/queue --calculator emt
	$(BIN)/pesdata label import $(DEMO)/store --queue $(DEMO)/queue --method EMT
	$(BIN)/pesdata log $(DEMO)/store

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/bench_cli.py
	$(PY) benchmarks/bench_store.py
	$(PY) benchmarks/bench_descriptors.py
	$(PY) benchmarks/bench_select.py
	$(PY) benchmarks/bench_accuracy.py Cu Si

lint: install
	$(BIN)/ruff check pesdata tests benchmarks

schemas: install
	$(PY) -c "import json, pesdata.schema as s; print(json.dumps(s.schema_document(), indent=2, ensure_ascii=False))" > schemas/structure.json

clean:
	rm -rf $(DEMO) bench-out .pytest_cache
