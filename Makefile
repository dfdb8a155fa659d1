# The two commands of the README, and their parts.
.PHONY: setup run test test-fast audit bench-intent

PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# Rasa's usage reports and crash reports go nowhere unless asked for (core/processes.py).
export RASA_TELEMETRY_ENABLED ?= false

setup:
	@bash scripts/setup

# Set up, train what is missing, start the Rasa server and the action server in demo
# mode (it prints what demo mode relaxes; production refuses all of it).
run: setup
	$(PY) -m bot.serve --demo

# Set up and run the whole test suite (unit and end-to-end).
test: setup
	$(PY) -m pytest -p no:cacheprovider

# Unit tests only (no server start).
test-fast: setup
	$(PY) -m pytest -p no:cacheprovider -m "not e2e"

# Installed packages against known vulnerabilities (pip-audit); fails only on untriaged
# ones (requirements/audit-ignore.txt), says NOT AUDITED when the service is unreachable.
audit: setup
	$(PY) scripts/audit.py

bench-intent: setup
	$(PY) -m training.bench_intent --train ../shared/data/banking77/train.csv --test ../shared/data/banking77/test.csv
