# syntax=docker/dockerfile:1
# Slim multi-stage image: build a wheel set in one stage, run as a non-root user in the other.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY osiris ./osiris
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

FROM python:3.11-slim
# git: the local code host and git http-backend; tini: signals reach uvicorn for a clean shutdown
RUN apt-get update \
 && apt-get install -y --no-install-recommends git tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 osiris
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER osiris
WORKDIR /home/osiris
ENV OSIRIS_HOST=0.0.0.0 \
    OSIRIS_PORT=8000 \
    OSIRIS_DATA_DIR=/home/osiris/data \
    OSIRIS_LOG_JSON=true \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz').status == 200 else 1)"
ENTRYPOINT ["tini", "--", "osiris"]
CMD ["serve"]
