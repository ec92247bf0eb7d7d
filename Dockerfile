# serkit web service: `docker build -t serkit .` then `docker run -p 5000:5000 serkit`.
# CPU-only torch; the default model ships inside the package (serkit/default_model).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY serkit ./serkit

# The Makefile's install without the dev extra, plus the timeline extra (silero-vad, so the web
# page's long-clip timeline finds speech segments; it needs no torchaudio).
# torch==2.13.0 is pinned; its CPU-only wheel (2.13.0+cpu) lives on PyTorch's index, not on PyPI,
# so the image (and only the image) adds that index.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints.txt ".[timeline]" \
    && rm -rf /src \
    && serkit info >/dev/null   # fails the build when the default model is missing

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin serkit
USER serkit
WORKDIR /home/serkit

EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:5000/healthz', timeout=4).status != 200)"]
CMD ["serkit", "serve", "--host", "0.0.0.0", "--port", "5000"]
