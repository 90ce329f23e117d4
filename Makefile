# Two entry points: `make run` (set up, then serve the app) and `make test`.
# Every step is skipped when its stamp is newer than its inputs, so a second
# `make run` starts in seconds.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEIGHTS := pretrained_models/2stems/.verified
ROOMS := pretrained_models/rooms/.verified
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get
HOST ?= 127.0.0.1
PORT ?= 8501
TEST_WORKERS ?= 2

.PHONY: run test setup setup-test rooms system-deps browser-deps bench clean-venv

run: setup
	$(BIN)/streamlit run streamlit_app.py --server.address $(HOST) --server.port $(PORT)

# Two pytest workers, each taking a whole test file at a time (module fixtures such as a browser test's app
# server are started once); 2 cores run the suite in two thirds of the time one process takes.
test: setup-test
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

setup: system-deps $(STAMP) $(WEIGHTS)

setup-test: setup browser-deps $(ROOMS)

# Two measured rooms (OpenAIR) for scripts/robustness.py's "(measured)" conditions and their tests.
rooms: $(ROOMS)

system-deps:
	@command -v ffmpeg >/dev/null || { $(APT) update -qq && $(APT) install -y -qq ffmpeg; }

browser-deps:
	@{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || \
	  { $(APT) update -qq && $(APT) install -y -qq chromium chromium-driver; }

$(STAMP): requirements.lock pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --only-binary :all: -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(WEIGHTS): $(STAMP) scripts/fetch_spleeter_weights.py
	$(BIN)/python scripts/fetch_spleeter_weights.py
	@touch $@

$(ROOMS): $(STAMP) scripts/fetch_room_responses.py
	$(BIN)/python scripts/fetch_room_responses.py
	@touch $@

bench: setup
	$(BIN)/python scripts/bench.py

clean-venv:
	rm -rf $(VENV)
