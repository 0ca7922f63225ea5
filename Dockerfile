# Portask image. tools/install_smoke.sh runs these same steps (wheel, clean install,
# serve, HEALTHCHECK probe, SIGTERM) in CI, since the build machines have no Docker engine.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY portask ./portask
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin portask \
    && mkdir -p /data && chown portask:portask /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER portask
WORKDIR /data
# Kafka, AMQP, HTTP, management API; and their TLS listeners (started when tls.cert_file
# or tls.dev is set): Kafka SSL, AMQPS, HTTPS, management over HTTPS.
# tests/integration/test_deploy.py checks these against the default ports.
EXPOSE 9092 5672 8080 15672 9093 5671 8443 15671
VOLUME /data
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2).status == 200 else 1)"]
CMD ["portask", "serve", "--host", "0.0.0.0", "--data-dir", "/data"]
