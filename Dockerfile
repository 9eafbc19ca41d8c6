# One image for policyd, smtpedge and policyctl (the default target, `app`), and
# the compose stack's Redis (--target redis), Prometheus (--target prometheus) and
# mail sink (--target sink: the app image plus aiosmtpd, which the app does not use).
#
# Every stage is labelled dev.smtp-policy.image, so superseded builds can be
# removed with: docker image prune -f --filter label=dev.smtp-policy.image
#
# The base is Debian bookworm built locally (no registry needed):
#   scripts/docker-base      # makes smtp-policy/base:bookworm
#   docker build -t smtp-policy/app .
ARG BASE=smtp-policy/base:bookworm

FROM ${BASE} AS build
LABEL dev.smtp-policy.image=build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv
RUN python3 -m venv /opt/smtp-policy
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
# Dependencies first, so a source change does not download them again.
COPY pyproject.toml README.md /src/
RUN /opt/smtp-policy/bin/python -c 'import subprocess, tomllib; \
deps = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]; \
subprocess.run(["/opt/smtp-policy/bin/pip", "install", *deps], check=True)'
COPY policy /src/policy
COPY policyd /src/policyd
COPY smtpedge /src/smtpedge
RUN /opt/smtp-policy/bin/pip install --no-deps /src \
    && /opt/smtp-policy/bin/python -m compileall -q /opt/smtp-policy

FROM ${BASE} AS redis
LABEL dev.smtp-policy.image=redis
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server tini
USER redis
EXPOSE 6379
ENTRYPOINT ["tini", "--"]
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]

FROM ${BASE} AS prometheus
LABEL dev.smtp-policy.image=prometheus
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus tini wget
USER prometheus
EXPOSE 9090
ENTRYPOINT ["tini", "--"]
CMD ["prometheus", "--config.file=/etc/prometheus/prometheus.yml", \
     "--storage.tsdb.path=/tmp/prometheus", "--web.listen-address=0.0.0.0:9090"]

FROM ${BASE} AS app
LABEL dev.smtp-policy.image=app
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 tini \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/smtp-policy \
       --create-home --shell /usr/sbin/nologin smtp-policy
COPY --from=build /opt/smtp-policy /opt/smtp-policy
ENV PATH=/opt/smtp-policy/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER smtp-policy
WORKDIR /var/lib/smtp-policy
# tini: a real PID 1, so SIGTERM reaches the program and zombies are reaped.
ENTRYPOINT ["tini", "--"]
CMD ["policyd", "--help"]

FROM app AS sink
LABEL dev.smtp-policy.image=sink
USER root
RUN /opt/smtp-policy/bin/pip install --no-cache-dir "aiosmtpd>=1.4.6"
