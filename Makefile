# The two commands of the README: `make demo` and `make test`. Each sets itself up.
PY := .venv/bin/python
PYTEST_ARGS ?= -n 2

.PHONY: setup demo test lint clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m microtrain.demo

test: setup
	.venv/bin/ruff check microtrain tests benchmarks scripts
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check microtrain tests benchmarks scripts

clean:
	rm -rf build .pytest_cache
