# serkit web service:  docker build -t serkit .   then   docker run -p 5000:5000 serkit
# On a machine without a registry (no Docker Hub, no PyTorch index), see docs/web.md, "Docker":
# the same file builds there through the build arguments below; .ci/docker-smoke does it.
# Nothing here needs BuildKit: the classic builder builds it too.
#
# Build arguments
#   BASE         a Debian-based image with Python 3.11 and its venv module (python:3.11-slim; or a
#                stand-in made from Debian's packages with debootstrap and `docker import`)
#   EXTRAS       the package's extras. Empty (default): the serving install, no torch: the shipped
#                models run on onnxruntime and the Silero VAD ships inside serkit. "train": the
#                full image (torch, Lightning, transformers) for serving your own PyTorch bundles.
#   NO_DEPS      packages installed afterwards without their declared dependencies
#   TORCH_INDEX  an extra pip index for torch's CPU-only wheel (PyTorch's CPU index); empty: none.
#                A wheel put in docker/wheels/ beforehand is offered to pip first (--find-links),
#                e.g. `pip download torch==2.13.0 --no-deps -d docker/wheels` on the host.
ARG BASE=python:3.11-slim

# -- build: a venv in /opt/serkit; the sources, the wheels and pip's work stay in this stage --
FROM ${BASE} AS build
ARG EXTRAS=
ARG NO_DEPS=
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/serkit
COPY docker/wheels/ /wheels/
COPY pyproject.toml constraints.txt README.md /src/
COPY serkit/ /src/serkit/
WORKDIR /src
# The Makefile's install (-c constraints.txt) without the dev extra; torch==2.13.0 resolves to the
# CPU build (2.13.0+cpu, from docker/wheels/ or TORCH_INDEX), never to PyPI's CUDA build.
RUN /opt/serkit/bin/pip install -q --find-links /wheels ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} \
        -c constraints.txt ".${EXTRAS:+[$EXTRAS]}" \
    && /opt/serkit/bin/pip check \
    && if [ -n "$NO_DEPS" ]; then /opt/serkit/bin/pip install -q --no-deps -c constraints.txt $NO_DEPS; fi
# Not needed to serve: torch's C++ headers, C++ test programs and tools (all but its shared-memory
# manager), and the packages' own test suites.
RUN set -e; site=$(/opt/serkit/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
    if [ -d "$site/torch" ]; then \
        rm -rf "$site/torch/include" "$site/torch/test"; \
        find "$site/torch/bin" -mindepth 1 -maxdepth 1 ! -name torch_shm_manager -exec rm -rf {} +; \
    fi; \
    find "$site" -depth -type d -name tests -path "$site/*/tests" -exec rm -rf {} +
# Fails the build when the default model is missing or the served app cannot start (run from /,
# so nothing is imported from /src).
WORKDIR /
RUN /opt/serkit/bin/serkit info >/dev/null \
    && /opt/serkit/bin/python -c "from serkit.web import create_app; create_app()"

# -- the image: the base, a user, the venv; nothing else --
FROM ${BASE}
ENV PATH=/opt/serkit/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MPLCONFIGDIR=/tmp/matplotlib
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin serkit
COPY --from=build /opt/serkit /opt/serkit
USER 10001:10001
WORKDIR /home/serkit
EXPOSE 5000
# serkit serve stops on SIGTERM (waitress closes, exit 0), so `docker stop` needs no SIGKILL.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:5000/healthz', timeout=4).status != 200)"]
CMD ["serkit", "serve", "--host", "0.0.0.0", "--port", "5000"]
