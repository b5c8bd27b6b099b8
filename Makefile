# softmax_multilabel_layer: one-command set-up, tests, demo and benchmark.
#
#   make setup   create .venv, install requirements (versions pinned by constraints.txt), build (or reuse)
#                Caffe, write .venv/bin/caffe
#   make lint    set up if needed, then ruff check and mypy (settings in pyproject.toml)
#   make test    set up if needed, then run the tests
#   make demo    set up if needed, then run the digits demo (or train the smoke net)
#   make bench   set up if needed, then run scripts/benchmark.py (one module per anchor in scripts/bench/)
#   make docs    rewrite every generated figure in README.md and docs/ from the committed results files
#                (scripts/docs.py: docs/results/; the examples' results.json); `--check` mode runs in the tests
#   make transfer set up if needed, then run examples/transfer/run_transfer.py at the tuned rates
#                (examples/transfer/tuned.json; TRANSFER_ARGS="--tune" redoes the grid; JOBS=N caffe runs at
#                a time, default the core count; not in demo)
#   make fuzz    long random hypothesis runs of the core (FUZZ_SCALE=25 times the CI examples; seed printed)
#   make mutation  mutation testing of the loss core and the option parser with mutmut (docs/testing.md)
#   make mutation-data  the same over the data room (mutmut_data.cfg; MUTANTS=pattern runs some of them)
#   make clean   remove local outputs (never .venv, never the Caffe cache)
#   make lock    re-resolve the requirements and rewrite constraints.txt (deliberate upgrades only)
#
# Variables: PYTHON (interpreter for the venv, default python3), USE_SYSTEM_CAFFE=1 (use
# an existing pycaffe + caffe binary instead of building; remembered by the
# venv, USE_SYSTEM_CAFFE=0 goes back to building), CAFFE_BIN=path,
# CAFFE_CACHE_DIR=folder (where Caffe is built, default ~/.cache/softmax_multilabel_layer).

# Empty: python3 (scripts/setup.sh's default).
PYTHON ?=
# Empty: scripts/setup.sh keeps the venv's last choice (first time: build Caffe).
USE_SYSTEM_CAFFE ?=
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
SETUP_INPUTS := requirements-dev.txt constraints.txt pyproject.toml setup.py scripts/setup.sh scripts/install_requirements.sh scripts/install_caffe.sh scripts/find_system_caffe.sh
DEMO := examples/multilabel_digits/run_demo.py

# The stamp lists files set-up made or relies on (the wrapper, the caffe binary,
# pycaffe); if one has gone (say the Caffe cache was deleted), set up again.
STAMP_STALE := $(shell [ -f $(STAMP) ] && while IFS= read -r p; do [ -e "$$p" ] || echo stale; done < $(STAMP))
ifneq ($(strip $(STAMP_STALE)),)
.PHONY: $(STAMP)
endif

.PHONY: setup test demo bench docs transfer fuzz mutation mutation-data clean distclean

setup:
	PYTHON="$(PYTHON)" USE_SYSTEM_CAFFE="$(USE_SYSTEM_CAFFE)" bash scripts/setup.sh

$(STAMP): $(SETUP_INPUTS)
	PYTHON="$(PYTHON)" USE_SYSTEM_CAFFE="$(USE_SYSTEM_CAFFE)" bash scripts/setup.sh

.PHONY: lint lock

# Both run even if the first fails; either failing fails the target.
lint: $(STAMP)
	@status=0; \
	echo "$(VENV)/bin/ruff check ."; $(VENV)/bin/ruff check . || status=1; \
	echo "$(VENV)/bin/mypy"; $(VENV)/bin/mypy || status=1; \
	echo "$(VENV)/bin/lint-imports"; $(VENV)/bin/lint-imports || status=1; \
	exit $$status

lock:
	PYTHON="$(PYTHON)" bash scripts/lock.sh

test: $(STAMP)
	$(VPY) -m pytest -q tests

demo: $(STAMP)
	@if [ -f $(DEMO) ]; then \
	  echo "$(VPY) $(DEMO)"; $(VPY) $(DEMO); \
	else \
	  echo "$(DEMO) not found: training the smoke net instead"; \
	  echo "$(VENV)/bin/caffe train --solver prototxt/smoke/solver.prototxt"; \
	  $(VENV)/bin/caffe train --solver prototxt/smoke/solver.prototxt; \
	fi
	$(VPY) examples/yeast/run_yeast.py

bench: $(STAMP)
	$(VPY) scripts/benchmark.py

docs: $(STAMP)
	$(VPY) scripts/docs.py
	$(VPY) examples/multilabel_digits/readme_tables.py
	$(VPY) examples/yeast/yeast_report.py
	$(VPY) examples/transfer/transfer_report.py

# The transfer miniature (examples/transfer/README.md): 6 losses x 2 conditions x 3 seeds = 36 `caffe train` runs
# of 2,000 iterations, JOBS at a time (default: the core count), at the rates in examples/transfer/tuned.json.
# Knobs, through TRANSFER_ARGS: --checkpoints 500 1000 2000 4000 (the budget curve one step further, about
# twice the time), --seeds, --losses, --conditions, --reuse (keep finished runs of output/transfer),
# --tune (redo the rate grid: --tune-seeds, --tune-iter, --lrs, --max-grid).
transfer: $(STAMP)
	$(VPY) examples/transfer/run_transfer.py $(if $(JOBS),--jobs $(JOBS)) $(TRANSFER_ARGS)

# Random (not derandomized) hypothesis runs, FUZZ_SCALE times the examples of `make test`, float32 and
# float64, trained-regime strategies included. The seed is printed first: replay a failure with
# `make fuzz FUZZ_SEED=<seed>` (or the @reproduce_failure blob hypothesis prints).
FUZZ_SCALE ?= 25
ifndef FUZZ_SEED
FUZZ_SEED := $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
endif
fuzz: $(STAMP)
	@echo "make fuzz: hypothesis seed $(FUZZ_SEED), FUZZ_SCALE=$(FUZZ_SCALE)"
	HYPOTHESIS_PROFILE=fuzz FUZZ_SCALE=$(FUZZ_SCALE) $(VPY) -m pytest -q -p no:cacheprovider \
	  --hypothesis-seed=$(FUZZ_SEED) --hypothesis-show-statistics tests/test_fuzz.py tests/test_functional.py -k "fuzz or properties"

# mutmut 3 over what setup.cfg [mutmut] lists (the loss core and params.py), killed by the core tests
# (tests/test_functional.py, test_errors.py without the caffe.Net cases, test_fuzz.py at FUZZ_SCALE=0.1).
# Survivors: `.venv/bin/mutmut results`, then `.venv/bin/mutmut show <name>`. About 25 min on 2 busy cores.
#
# MUTATE=<name> runs setup.cfg's [mutmut.<name>] section instead (e.g. MUTATE=evaluation: metrics, rules, report),
# in a copy of the sources under output/mutation-<name>/ so its mutants never mix with the default run's.
# MUTATION_CHILDREN: parallel mutants (default 2; 1 on a shared machine); MUTANTS=<pattern>: only the mutants
# whose names match, e.g. MUTANTS="softmax_multilabel_layer.evaluation.metrics*".
MUTATE ?=
MUTATION_DIR := output/mutation-$(MUTATE)
MUTATION_CHILDREN ?= 2
mutation: $(STAMP)
ifeq ($(strip $(MUTATE)),)
	rm -rf mutants
	FUZZ_SCALE=0.1 $(VPY) -m mutmut run --max-children $(MUTATION_CHILDREN) $(MUTANTS) || true
	$(VPY) -m mutmut results
else
	rm -rf $(MUTATION_DIR) && mkdir -p $(MUTATION_DIR)
	cp -r softmax_multilabel_layer tests scripts pyproject.toml $(MUTATION_DIR)/
	$(VPY) -c "import configparser, sys; c = configparser.ConfigParser(); c.read('setup.cfg'); \
	  o = configparser.ConfigParser(); o['mutmut'] = c['mutmut.' + sys.argv[1]]; o.write(open(sys.argv[2], 'w'))" \
	  $(MUTATE) $(MUTATION_DIR)/setup.cfg
	cd $(MUTATION_DIR) && FUZZ_SCALE=0.1 $(abspath $(VPY)) -m mutmut run --max-children $(MUTATION_CHILDREN) $(MUTANTS) || true
	cd $(MUTATION_DIR) && $(abspath $(VPY)) -m mutmut results
endif

# mutmut over the data room, as mutmut_data.cfg says, in a copy of the tree (build/mutation-data) whose
# setup.cfg is mutmut_data.cfg; survivors: cd build/mutation-data && ../../.venv/bin/mutmut results.
# MUTANTS="softmax_multilabel_layer.data.image_data*" runs only the mutants whose names match.
MUTATION_DATA := build/mutation-data
# MUTATION_CHILDREN and MUTANTS as for mutation above.
mutation-data: $(STAMP)
	rm -rf $(MUTATION_DATA) && mkdir -p $(MUTATION_DATA)
	cp -r softmax_multilabel_layer tests scripts pyproject.toml $(MUTATION_DATA)/
	cp mutmut_data.cfg $(MUTATION_DATA)/setup.cfg
	cd $(MUTATION_DATA) && $(abspath $(VPY)) -m mutmut run --max-children $(MUTATION_CHILDREN) $(MUTANTS) || true
	cd $(MUTATION_DATA) && $(abspath $(VPY)) -m mutmut results

clean:
	rm -rf output .pytest_cache .hypothesis .mypy_cache .ruff_cache *.egg-info mutants
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Also removes the venv (not the Caffe cache: delete $${CAFFE_CACHE_DIR:-~/.cache/softmax_multilabel_layer} by hand).
distclean: clean
	rm -rf $(VENV)
