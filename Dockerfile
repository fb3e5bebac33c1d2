# The SPM worker (Faust) image used by docker-compose.yml. The product is installed as a wheel
# would install it (the schemas ship as package data); it is built in /src and runs from /app,
# so the source tree is never on the worker's import path.
# tests/integration/test_dockerfile.py replays the COPY, RUN pip and CMD lines without Docker.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SPM_VAR_DIR=/app/var

WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
RUN pip install . \
 && useradd --create-home --uid 10001 spm \
 && mkdir -p /app/var \
 && chown 10001 /app/var

WORKDIR /app
USER 10001
EXPOSE 6066
CMD ["faust", "-A", "streams.worker", "worker", "-l", "info"]
