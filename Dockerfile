# syntax=docker/dockerfile:1
# HappyKube image: the Ray head and worker pods of the RayService and the bot Deployment.
#
#   docker build -t happykube:dev .        (about 3 GB; see DEPLOYMENT.md)
#
# Three stages: `models` downloads the production checkpoints at the revisions named in
# serve_config.production.yaml, `wheel` builds the project, and the runtime stage starts
# from Ray's own image at the pinned Ray version (KubeRay requires image and rayVersion to
# agree; tests/unit/test_kuberay_manifests.py checks it) and adds only our code and models.

FROM python:3.11.13-slim AS models
WORKDIR /build
# The bake runs on the locked versions too (huggingface_hub, pyyaml): the whole runtime lock,
# hashes required, torch as its CPU build from the PyTorch CPU index.
COPY requirements-runtime.lock ./
RUN pip install --no-cache-dir --require-hashes --no-deps \
      --extra-index-url https://download.pytorch.org/whl/cpu -r requirements-runtime.lock
COPY serve_config.production.yaml ./
COPY kuberay/__init__.py kuberay/bake.py ./kuberay/
ENV HF_HOME=/opt/hf
RUN python -m kuberay.bake serve_config.production.yaml

FROM python:3.11.13-slim AS wheel
WORKDIR /src
COPY . .
# Built with the locked setuptools (its entry of the lock, hashes required), not whatever
# build isolation would download that day.
RUN awk '/^setuptools==/{p=1; print; next} /^[a-z]/{p=0} p' requirements-runtime.lock \
      > /tmp/build.lock \
    && pip install --no-cache-dir --require-hashes --no-deps -r /tmp/build.lock \
    && pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

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
COPY --chown=1000:100 requirements-runtime.lock /tmp/
# Exactly the locked versions, hashes required (the base image's own packages are replaced
# where they differ), torch as its CPU build; then the project itself without dependencies.
RUN pip install --no-cache-dir --require-hashes --no-deps \
      --extra-index-url https://download.pytorch.org/whl/cpu -r /tmp/requirements-runtime.lock \
    && pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels /tmp/requirements-runtime.lock
COPY --from=models --chown=1000:100 /opt/hf /opt/hf
ENV HF_HOME=/opt/hf \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /home/ray
