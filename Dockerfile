# One image for every service of docker-compose.yml: Prefect server, Prefect worker (and the flow runs it
# starts), Dask scheduler and Dask workers. All of them run the same installed project, so a task pickled
# by the flow unpickles on any worker, and the scheduler has the project's classes too.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    DASK_LOGGING__DISTRIBUTED=warning

# The CPU build of torch, pinned as in pyproject.toml; the PyPI wheel for Linux bundles CUDA (several GB).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md prefect.yaml ./
COPY pipeline pipeline
COPY catalog catalog
COPY flows flows
COPY model model
RUN pip install . && mkdir -p /data/sources /data/catalog /etc/dask \
    && cp flows/dask.yaml /etc/dask/sammed3d.yaml

# docker-compose.yml runs the services as an unprivileged user (SAMMED3D_UID): keep Prefect's home writable.
ENV HOME=/tmp PREFECT_HOME=/tmp/prefect
