# omnict on a CUDA GPU: `docker build -t omnict .` then see README "Docker".
# The install is the README's (`pip install torch==2.13.0 ".[seg]"`) plus the [eval] extra (pycocoevalcap, for
# `omnict score --protocol vlm3d`); on this base PyPI's torch is the CUDA build.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    OMNICT_CACHE_DIR=/cache/masks \
    TOTALSEG_HOME_DIR=/models/totalsegmentator \
    HF_HUB_OFFLINE=1

# Ubuntu's python3 (and Java, which METEOR's scorer runs on) follow the base image's security updates; pinning an
# exact build would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip python3-venv default-jre-headless \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/omnict
COPY setup.cfg pyproject.toml README.md ./
COPY omnict_cli ./omnict_cli
COPY models ./models
# torch is pinned; ".[seg,eval]" is this source tree, whose own pins are in setup.cfg.
# hadolint ignore=DL3013
RUN pip install torch==2.13.0 ".[seg,eval]" \
    && omnict --version

RUN useradd --create-home --uid 1000 omnict \
    && mkdir -p /data /cache /models \
    && chown omnict /data /cache /models
USER 1000:1000
WORKDIR /data
VOLUME ["/data", "/cache", "/models"]

ENTRYPOINT ["omnict"]
CMD ["--help"]
