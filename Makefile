# psconv-accel: `make demo` runs the main job end to end, `make test` the whole test suite.
# Both set everything up on a fresh machine first (Debian packages, then a venv in .venv).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SYS    := $(VENV)/.system
JOBS   ?= 2

.PHONY: setup demo test sweep bench clean

setup: $(SYS) $(STAMP)

$(SYS): scripts/setup_system.sh
	./scripts/setup_system.sh
	@mkdir -p $(VENV) && touch $@

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

demo: setup
	$(PY) -m host.demo

test: setup
	$(PY) -m pytest -n $(JOBS) -q -m "not slow"

sweep: setup
	$(PY) -m pytest -n $(JOBS) -q sim_tests -m slow
	$(PY) -m pytest -q tests/test_formal.py -m slow

bench: setup
	$(PY) -m bench.engine
	$(PY) -m bench.resources

clean:
	rm -rf build sim_build .pytest_cache .hypothesis
