# The popstream worker, simulator and CLI.
#
# Stage 1 compiles the wheel with its native engine core (native/, Rust through
# PyO3, an abi3 build for CPython >= 3.11); stage 2 installs it without a compiler.
FROM rust:1-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY native ./native
COPY streams ./streams
RUN python3 -m venv /tmp/b && /tmp/b/bin/pip install --no-cache-dir build \
    && /tmp/b/bin/python -m build --wheel --outdir /wheels .

FROM python:3.13-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY --from=build /wheels /wheels
COPY schemas ./schemas
RUN pip install "$(ls /wheels/popstream-*.whl)[rocksdb]" && rm -rf /wheels \
    && useradd --system --uid 10001 popstream \
    && mkdir -p /data && chown popstream /data
USER popstream
ENV POPSTREAM_DATA_DIR=/data POPSTREAM_STORE=rocksdb:// POPSTREAM_SCHEMA_DIR=/app/schemas \
    POPSTREAM_ENGINE=native
EXPOSE 6066
ENTRYPOINT ["popstream"]
CMD ["--help"]
