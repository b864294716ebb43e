# TrailPay services image (production: no embedded extra).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY trailpay ./trailpay
COPY streams ./streams
COPY connectors ./connectors
COPY sinks ./sinks
COPY dashboards ./dashboards
COPY controlplane ./controlplane
RUN pip install -c requirements.lock .
RUN useradd --system --uid 10001 trailpay
USER trailpay
ENTRYPOINT ["trailpay"]
CMD ["--help"]
