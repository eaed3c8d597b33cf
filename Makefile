# The two commands a newcomer types: `make demo` and `make test`. Both install into .venv first
# (see tools/bootstrap.sh for how torch is chosen).
VENV ?= .venv
PY := $(VENV)/bin/python
# Re-install when the package metadata or the set-up script change.
STAMP := $(VENV)/.installed
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: demo test lint bench install install-dev clean

$(STAMP): pyproject.toml tools/bootstrap.sh
	bash tools/bootstrap.sh $(VENV)
	touch $@

$(STAMP_DEV): pyproject.toml tools/bootstrap.sh
	bash tools/bootstrap.sh $(VENV) dev,export
	touch $@ $(STAMP)

install: $(STAMP)
install-dev: $(STAMP_DEV)

# The main job: synthetic shapes -> a model trained from scratch on the CPU -> metrics and pictures.
DEMO_OUT ?= runs/demo
demo: $(STAMP)
	$(VENV)/bin/maskrcnn demo --out $(DEMO_OUT)

lint: $(STAMP_DEV)
	$(VENV)/bin/ruff check src tests benchmarks tools samples
	$(VENV)/bin/ruff format --check src tests benchmarks tools samples

# Test workers of one thread each, a test file per worker at a time: on 2 cores, two workers take ~3.5
# minutes where one process on two threads takes ~5 (most tests are small, and two threads on small
# tensors mostly wait for each other). TEST_WORKERS=1 runs them one after another.
TEST_WORKERS ?= 2
test: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(PY) benchmarks/ops.py
	$(PY) benchmarks/inference.py --bf16
	$(PY) benchmarks/predict.py
	$(PY) benchmarks/demo.py --out runs/bench-demo-$$(date +%s)
	$(PY) benchmarks/distributed.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache .hypothesis
