# syntax=docker/dockerfile:1
# HappyKube image: the Ray head and worker pods of the RayService and the bot Deployment.
#
#   docker build -t happykube:dev .        (about 3 GB; see DEPLOYMENT.md)
#
# Three stages: `models` downloads the production checkpoints at the revisions named in
# serve_config.production.yaml (and refuses unpinned ones or missing weights), `wheel` builds the project, and the runtime stage starts
# from Ray's own image at the pinned Ray version (KubeRay requires image and rayVersion to
# agree; tests/unit/test_kuberay_manifests.py checks it) and adds only our code and models.

# The base images, and where pip finds torch's CPU build, are arguments only so that
# .ci/image-check can build this same file offline on a base made from Debian packages.
ARG PYTHON_IMAGE=python:3.11.13-slim
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-cpu

FROM ${PYTHON_IMAGE} AS models
ARG TORCH_SOURCE="--extra-index-url https://download.pytorch.org/whl/cpu"
ARG BAKE_CONFIG=serve_config.production.yaml
WORKDIR /build
# The bake runs on the locked versions too (huggingface_hub, pyyaml): the whole runtime lock,
# hashes required, torch as its CPU build from the PyTorch CPU index.
COPY requirements-runtime.lock ./
# hadolint ignore=SC2086
RUN pip install --no-cache-dir --require-hashes --no-deps ${TORCH_SOURCE} \
      -r requirements-runtime.lock
COPY ${BAKE_CONFIG} ./
COPY kuberay/__init__.py kuberay/bake.py ./kuberay/
ENV HF_HOME=/opt/hf
# The bake refuses unpinned revisions and snapshots without safetensors weights. Only a
# throwaway build (CI checks the mechanics) may pass --build-arg BAKE_FLAGS=--allow-unpinned.
ARG BAKE_FLAGS=""
# hadolint ignore=SC2086
RUN mkdir -p /opt/hf && python -m kuberay.bake "$(basename "${BAKE_CONFIG}")" $BAKE_FLAGS

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY . .
# Built with the locked setuptools (its entry of the lock, hashes required), not whatever
# build isolation would download that day.
RUN awk '/^setuptools==/{p=1; print; next} /^[a-z]/{p=0} p' requirements-runtime.lock \
      > /tmp/build.lock \
    && pip install --no-cache-dir --require-hashes --no-deps -r /tmp/build.lock \
    && pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${RAY_IMAGE} AS runtime
ARG TORCH_SOURCE="--extra-index-url https://download.pytorch.org/whl/cpu"
# KubeRay's generated readiness and liveness probes run `bash -c "wget ..."`: keep both.
USER 0
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bash wget \
    && rm -rf /var/lib/apt/lists/*
# Back to the base image's `ray` user (uid 1000, group users 100) for everything after.
USER 1000
COPY --from=wheel --chown=1000:100 /wheels /tmp/wheels
COPY --chown=1000:100 requirements-runtime.lock /tmp/
# Exactly the locked versions, hashes required (the base image's own packages are replaced
# where they differ), torch as its CPU build; then the project itself without dependencies.
# hadolint ignore=SC2086
RUN pip install --no-cache-dir --require-hashes --no-deps ${TORCH_SOURCE} \
      -r /tmp/requirements-runtime.lock \
    && pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels /tmp/requirements-runtime.lock
COPY --from=models --chown=1000:100 /opt/hf /opt/hf
ENV HF_HOME=/opt/hf \
    HF_HUB_OFFLINE=1 \
    HAPPYKUBE_ENVIRONMENT=production \
    PYTHONUNBUFFERED=1
WORKDIR /home/ray

# The GPU image (`docker build --target gpu -t happykube:dev-gpu .`) for the production-gpu
# overlay's model workers: the runtime image with torch swapped for its CUDA build of the
# same version (the locked packages it shares stay), which brings CUDA's user-space
# libraries as pip packages (nvidia-*); the driver comes from the node (NVIDIA's device
# plugin). Not hash-locked yet: the CPU lock cannot hold the CUDA index's hashes.
FROM runtime AS gpu
ARG TORCH_CUDA_INDEX=https://download.pytorch.org/whl/cu126
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --index-url ${TORCH_CUDA_INDEX} "torch==2.13.0+cu126" \
    && python -c "import torch; assert torch.version.cuda, torch.__version__"
USER 1000

# The last stage is what a plain `docker build .` builds: the CPU image, as before.
FROM runtime AS cpu
