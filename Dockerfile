# syntax=docker/dockerfile:1
# HappyKube image: the Ray head and worker pods of the RayService and the bot Deployment.
#
#   docker build -t happykube:dev .        (about 3 GB; see DEPLOYMENT.md)
#
# Three stages: `models` downloads the production checkpoints at the revisions named in
# serve_config.production.yaml (and refuses unpinned ones or missing weights), `wheel` builds the project, and the runtime stage starts
# from Ray's own image at the pinned Ray version (KubeRay requires image and rayVersion to
# agree; tests/unit/test_kuberay_manifests.py checks it) and adds only our code and models.

FROM python:3.11.13-slim AS models
WORKDIR /build
RUN pip install --no-cache-dir huggingface_hub==2.4.0 pyyaml==6.0.3
COPY serve_config.production.yaml ./
COPY kuberay/__init__.py kuberay/bake.py ./kuberay/
ENV HF_HOME=/opt/hf
# The bake refuses unpinned revisions and snapshots without safetensors weights. Only a
# throwaway build (CI checks the mechanics) may pass --build-arg BAKE_FLAGS=--allow-unpinned.
ARG BAKE_FLAGS=""
RUN python -m kuberay.bake serve_config.production.yaml $BAKE_FLAGS

FROM python:3.11.13-slim AS wheel
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM rayproject/ray:2.60.0-py311-cpu AS runtime
# KubeRay's generated readiness and liveness probes run `bash -c "wget ..."`: keep both.
USER 0
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bash wget \
    && rm -rf /var/lib/apt/lists/*
# Back to the base image's `ray` user (uid 1000, group users 100) for everything after.
USER 1000
COPY --from=wheel --chown=1000:100 /wheels /tmp/wheels
# torch first and from the CPU index: the default index would pull a multi-GB CUDA build.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
COPY --from=models --chown=1000:100 /opt/hf /opt/hf
ENV HF_HOME=/opt/hf \
    HF_HUB_OFFLINE=1 \
    HAPPYKUBE_ENVIRONMENT=production \
    PYTHONUNBUFFERED=1
WORKDIR /home/ray
