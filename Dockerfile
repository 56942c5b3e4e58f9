# regcred-operator: two stages on a slim Python base; only the virtual environment reaches the final image.
# Installs exactly what the tests install: the runtime pins of the same lock resolution
# (requirements-runtime.lock, checked against requirements.lock by tests/test_image.py) and
# the package itself without dependencies; starts the same `regcred run` the tests start.

# The base image, one for both stages. Release builds pin it by digest (a tag moves; a digest does not):
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> .
# The default is the moving tag: pass the digest you have verified (`docker buildx imagetools inspect`).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements-runtime.lock /src/requirements-runtime.lock
RUN /opt/venv/bin/pip install --require-virtualenv -r /src/requirements-runtime.lock
COPY pyproject.toml README.md LICENSE /src/
COPY crds /src/crds
COPY operator /src/operator
RUN /opt/venv/bin/pip install --require-virtualenv --no-deps /src

FROM ${PYTHON_IMAGE}
# A fixed non-root UID/GID, the one the Helm chart's securityContext names.
RUN groupadd --system --gid 10001 regcred \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin regcred
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# 8080: kopf's liveness endpoint (/healthz); 9090: Prometheus metrics (/metrics).
EXPOSE 8080 9090
ENTRYPOINT ["regcred", "run", "--liveness", "http://0.0.0.0:8080/healthz"]
