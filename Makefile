# Two entry points: `make reproduce` (all notebooks, default profile -> figures/)
# and `make test` (unit tests + nbval over every notebook on the smoke profile; each step
# lists its 15 slowest tests, so a CI log shows where the minutes go).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= default
# FORCE=1: retrain the runs whose record exists under figures/runs/ (default: re-plot them)
FORCE ?=
# RECORDED=1: train nothing; plot the runs that have a record (a grid trained in several parts)
RECORDED ?=

.PHONY: reproduce test install lint readme clean-venv

install: $(STAMP)

# Reinstall whenever the package metadata or pins change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3
	@touch $(STAMP)

reproduce: $(STAMP)
	@# every notebook in order; each one's minutes go to figures/timings/reproduce_times_$(PROFILE).md
	GMAIOU_FORCE=$(FORCE) GMAIOU_RECORDED_ONLY=$(RECORDED) $(BIN)/python -m gmaiou.paper.reproduce --profile $(PROFILE)
	@echo "figures written to figures/; executed notebooks in build/notebooks/"

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15 tests
	$(BIN)/python -m pytest -q --durations=15 --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

# Copy the generated files that README.md and docs/*.md include (<!-- include figures/x.md -->)
# into them; `python -m gmaiou.paper.readme --check` only reports the stale ones.
readme: $(STAMP)
	$(BIN)/python -m gmaiou.paper.readme

lint: $(STAMP)
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
