# Two commands do all the set-up: `make run` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.costmeter-installed
DEMO_DB ?= $(CURDIR)/.costmeter-demo.db
SIM    ?= a100:train,h100:idle,rtx4090:bursty,t4:input-bound

.PHONY: run demo test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The desktop app: on the machine's GPUs when the NVIDIA driver answers, else on simulated ones.
# Without a display (a server, CI), record 10 s headless and print the cost report instead.
run: $(STAMP)
	@if [ -z "$$DISPLAY$$WAYLAND_DISPLAY" ] && [ "$$(uname)" = Linux ] && [ -z "$$QT_QPA_PLATFORM" ]; then \
		echo "No display here: recording 10 s headless instead of opening the window."; \
		$(BIN)/costmeter record --simulate $(SIM) --interval 1 --duration 10 --db $(DEMO_DB) && \
		$(BIN)/costmeter report --db $(DEMO_DB); \
	elif $(BIN)/python -c "import pynvml; pynvml.nvmlInit()" 2>/dev/null; then \
		$(BIN)/costmeter gui; \
	else \
		echo "No NVIDIA driver here: opening the app on simulated GPUs."; \
		$(BIN)/costmeter gui --simulate $(SIM); \
	fi

# Headless demo: record 10 s of simulated GPUs and print the report.
demo: $(STAMP)
	$(BIN)/costmeter record --simulate $(SIM) --interval 1 --duration 10 --db $(DEMO_DB)
	$(BIN)/costmeter report --db $(DEMO_DB)

lint: $(STAMP)
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy

test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info $(DEMO_DB)*
