# The image of `make image` (tools/image/build.sh), for those who build with Docker: the same Debian
# bookworm packages (tools/image/debian-packages on the minbase set that debian:bookworm-slim is),
# the same wheels pinned by hash (tools/image/*.txt, staged by wheels.sh), the same install script,
# and the same runtime configuration: build.sh reads the ENV, WORKDIR, USER, ENTRYPOINT and CMD of
# the last stage below into the image it writes.
#   docker build -t <registry>/rtc-recording-operator:<version> .
# One image, two commands: `rtcrec run` (the operator, default) and `rtcrec receiver`.
# Pin the base by digest for a reproducible build: --build-arg DEBIAN=debian:bookworm-slim@sha256:<digest>
# (`skopeo inspect docker://debian:bookworm-slim` shows it). Not hard-coded here: a pinned base also
# holds back its security updates until someone renews the pin. `make image` uses no base image.
ARG DEBIAN=debian:bookworm-slim

FROM ${DEBIAN} AS stage
# Behind a PyPI mirror or a TLS-intercepting proxy: --build-arg PIP_INDEX_URL=... / PIP_CERT=<a CA
# bundle inside the build>. Build arguments reach this stage's RUN only, not the image.
ARG PIP_INDEX_URL
ARG PIP_CERT
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml ./
COPY operator/ operator/
COPY tools/image/ tools/image/
RUN tools/image/wheels.sh /stage

FROM ${DEBIAN}
COPY tools/image/dpkg-slim.cfg /etc/dpkg/dpkg.cfg.d/rtcrec-slim
RUN --mount=type=bind,source=tools/image/debian-packages,target=/tmp/debian-packages \
    apt-get update \
 && apt-get install -y --no-install-recommends $(grep -v '^#' /tmp/debian-packages) \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
# The same path as in build.sh: pip records where the project's wheel came from.
RUN --mount=type=bind,from=stage,source=/stage,target=/tmp/rtcrec-stage sh /tmp/rtcrec-stage/install.sh

LABEL org.opencontainers.image.title=rtc-recording-operator \
      org.opencontainers.image.description="Kubernetes operator for Alibaba Cloud RTC cloud recordings"
# No .pyc writes at run time (read-only root file system; install.sh compiled them), logs unbuffered.
ENV PATH=/opt/rtcrec/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /
# Numeric UID so that Kubernetes' runAsNonRoot can verify it; the chart uses the same UID.
USER 10001:10001
ENTRYPOINT ["rtcrec"]
CMD ["run"]
