# pesdata — set-up, demo, tests and benchmarks. `make demo` and `make test` do everything on a
# fresh machine: create .venv, install torch (CPU, pinned) first, then the project.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
DEMO := demo-out

.PHONY: install demo test bench bench-scale lint schemas clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: install
	rm -rf $(DEMO)
	$(BIN)/pesdata demo --workdir $(DEMO)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/bench_cli.py
	$(PY) benchmarks/bench_store.py
	$(PY) benchmarks/bench_descriptors.py
	$(PY) benchmarks/bench_select.py
	$(PY) benchmarks/bench_label_efficiency.py
	$(PY) benchmarks/bench_accuracy.py Cu Si
	$(PY) benchmarks/bench_ssw.py

# ~1 h on 2 cores (the recall check and bench_flat ~3 min each) and ~1 GB of cached data (generated once,
# outside the repository)
bench-scale: install
	$(PY) benchmarks/bench_scale.py
	$(PY) benchmarks/bench_select_recall.py
	$(PY) benchmarks/bench_flat.py

lint: install
	$(BIN)/ruff check pesdata tests benchmarks

schemas: install
	$(PY) -c "import json, pesdata.schema as s; print(json.dumps(s.schema_document(), indent=2, ensure_ascii=False))" > schemas/structure.json

clean:
	rm -rf $(DEMO) bench-out .pytest_cache
