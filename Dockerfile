# The SPM worker (Faust) image used by docker-compose.yml. Installed in editable mode so the
# code finds schemas/ and deploy/ next to the package, exactly as in a source checkout.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SPM_VAR_DIR=/app/var

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
COPY deploy ./deploy
RUN pip install -e . \
 && useradd --create-home --uid 10001 spm \
 && mkdir -p /app/var \
 && chown spm /app/var

USER spm
EXPOSE 6066
CMD ["faust", "-A", "streams.app", "worker", "-l", "info"]
