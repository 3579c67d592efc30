# Two commands do all the set-up: `make run` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.costmeter-installed
# The test command also installs the plugins whose tests need them installed (Ray ~80 MB, Slurm).
TEST_STAMP := $(VENV)/.costmeter-test-installed
DEMO_DB ?= $(CURDIR)/.costmeter-demo.db
SIM    ?= a100:train,h100:idle,rtx4090:bursty,t4:input-bound

.PHONY: run demo test lint bench package clean system-packages

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP) plugins/costmeter-ray/pyproject.toml plugins/costmeter-slurm/pyproject.toml
	$(BIN)/python -m pip install --quiet -e plugins/costmeter-ray
	$(BIN)/python -m pip install --quiet -e plugins/costmeter-slurm
	@touch $(TEST_STAMP)

# The desktop app: on the machine's GPUs when the NVIDIA driver answers, else on simulated ones.
# Without a display (a server, CI), run the headless demo instead.
run: $(STAMP)
	@if [ -z "$$DISPLAY$$WAYLAND_DISPLAY" ] && [ "$$(uname)" = Linux ] && [ -z "$$QT_QPA_PLATFORM" ]; then \
		echo "No display here: running the headless demo instead of opening the window."; \
		$(MAKE) --no-print-directory demo; \
	elif $(BIN)/python -c "import pynvml; pynvml.nvmlInit()" 2>/dev/null; then \
		$(BIN)/costmeter gui; \
	else \
		echo "No NVIDIA driver here: opening the app on simulated GPUs."; \
		$(BIN)/costmeter gui --simulate $(SIM); \
	fi

# Headless demo: train the bundled example on a simulated A100 as a Costmeter run, then list
# the runs and print the cost report.
demo: $(STAMP)
	$(BIN)/costmeter run --simulate a100:train --gpus 1 --db $(DEMO_DB) -- \
		$(BIN)/python -m costmeter.examples.digits --epochs 20
	$(BIN)/costmeter runs --db $(DEMO_DB)
	$(BIN)/costmeter report --db $(DEMO_DB) --since 1h

lint: $(STAMP)
	$(BIN)/ruff check app tests bench plugins packaging
	$(BIN)/ruff format --check app tests bench plugins packaging
	$(BIN)/mypy

# What the tests need from the system (Debian packages), installed as root where missing.
system-packages:
	@bash packaging/system-packages.sh

test: lint $(TEST_STAMP) system-packages
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# The installer: dist/costmeter/ (PyInstaller onedir: the app with its own Python and Qt) and,
# on Debian/Ubuntu, dist/costmeter_VERSION_ARCH.deb. See packaging/README.md.
package: $(STAMP) system-packages
	$(BIN)/python packaging/build.py

clean:
	rm -rf $(VENV) build dist *.egg-info $(DEMO_DB)*
