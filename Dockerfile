# One image, two commands: `rtcrec run` (the operator, default) and `rtcrec receiver`.
# Build: docker build -t <registry>/rtc-recording-operator:<version> .
FROM python:3.11-slim

# No .pyc writes at run time (read-only root file system), logs straight to the container runtime.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml ./
COPY operator/ operator/
RUN pip install --no-cache-dir . && rm -rf /src

WORKDIR /
# Numeric UID so that Kubernetes' runAsNonRoot can verify it; the chart uses the same UID.
USER 10001:10001
ENTRYPOINT ["rtcrec"]
CMD ["run"]
