# The popstream worker, simulator and CLI.
FROM python:3.13-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
RUN pip install ".[rocksdb]" && useradd --system --uid 10001 popstream \
    && mkdir -p /data && chown popstream /data
USER popstream
ENV POPSTREAM_DATA_DIR=/data POPSTREAM_STORE=rocksdb:// POPSTREAM_SCHEMA_DIR=/app/schemas
EXPOSE 6066
ENTRYPOINT ["popstream"]
CMD ["--help"]
