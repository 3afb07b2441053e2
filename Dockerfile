# The gridwatch command in a container: the `topics`, `worker`, `sandbox` and `simulator` services of
# docker-compose.yml all run this image with a different subcommand.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . /src
RUN pip install . \
 && useradd --create-home --uid 10001 gridwatch \
 && mkdir -p /data \
 && chown gridwatch /data

# Worker state (Faust tables, run files) goes to a writable directory, not into the source tree.
USER gridwatch
WORKDIR /data
ENV GRIDWATCH_HOME=/data \
    GRIDWATCH_RUN_DIR=/data/run \
    KAFKA_BOOTSTRAP_SERVERS=kafka:9092

ENTRYPOINT ["gridwatch"]
CMD ["--help"]
