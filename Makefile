# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test bench lint lint-eval clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "installing dependencies into $(VENV) (first run, or pyproject.toml changed; about a minute)..."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	@$(VENV)/bin/mailer demo

test: $(STAMP)
	@$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	@$(PY) -m bench $(BENCH_ARGS)

lint-eval: $(STAMP)
	@$(PY) -m bench.lint_eval $(EVAL_ARGS)

lint: $(STAMP)
	@$(VENV)/bin/ruff check mailer tests bench
	@$(VENV)/bin/mypy mailer

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
