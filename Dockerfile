# sensorium-serve: the serving image (numpy + onnxruntime-gpu + grpcio; no torch, no training extra).
#
#   docker build -t sensorium-serve .
#   docker run --gpus all -p 50051:50051 -p 8000:8000 -v $PWD/repo:/models:ro sensorium-serve
#   # with scoring + leaderboard pages:  -v $PWD/data/truth:/truth:ro -v scores:/data -p 8080:8080 \
#   #   -e SENSORIUM_SERVE_TRUTH_DIR=/truth
#
# onnxruntime-gpu 1.31 (PyPI) is built against CUDA 13.0 and cuDNN 9 (its CUDA provider links libcudart.so.13,
# libcublas.so.13), hence the CUDA 13 cuDNN runtime base. Without a usable GPU the server falls back to the CPU
# (providers=auto). tests/ops/test_ops_container.py checks this file and runs its ENTRYPOINT/CMD/HEALTHCHECK.
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/sensorium
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server server
COPY client client
COPY models models
COPY protos protos
# The serving install: `pip install .` without the train extra (torch stays out of the image), plus the
# PostgreSQL driver for a shared scores database (SENSORIUM_SERVE_DB_URL=postgresql://..., several replicas).
RUN /opt/sensorium/bin/pip install . "psycopg[binary]>=3.2" \
    && ! /opt/sensorium/bin/python -c "import torch" 2> /dev/null

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home sensorium \
    && mkdir -p /models /data \
    && chown sensorium:sensorium /data
COPY --from=build /opt/sensorium /opt/sensorium
ENV PATH=/opt/sensorium/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SENSORIUM_SERVE_REPO=/models \
    SENSORIUM_SERVE_HOST=0.0.0.0 \
    SENSORIUM_SERVE_PORT=50051 \
    SENSORIUM_SERVE_HTTP_PORT=8000 \
    SENSORIUM_SERVE_WEB_PORT=8080 \
    SENSORIUM_SERVE_DB_URL=sqlite:////data/sensorium-scores.sqlite
# The model repository (Triton layout, mounted read-only) and the scores database (SQLite; or set
# SENSORIUM_SERVE_DB_URL=postgresql://... and leave /data unused).
VOLUME ["/models", "/data"]
WORKDIR /data
USER sensorium:sensorium
# gRPC (Predictor, KServe v2, Scoring, health, reflection), Prometheus /metrics, leaderboard pages.
EXPOSE 50051 8000 8080
# Exec form: the server is PID 1 and gets SIGTERM itself (health NOT_SERVING, streams drained, exit 0).
# Keep `docker stop -t` / terminationGracePeriodSeconds above SENSORIUM_SERVE_SHUTDOWN_GRACE_S (10 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sensorium-serve", "health", "--timeout", "3"]
ENTRYPOINT ["sensorium-serve"]
CMD ["serve"]
