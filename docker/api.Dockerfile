# The HTTP front end: the base install only, no torch (the API never imports it), and no
# model weights (the API never loads a model; the workers do).
# Build from the repository root:  docker build -f docker/api.Dockerfile -t vidcap-api .
# Run it with keys: `vidcap serve` refuses a non-loopback address without them.
#   docker run -e VIDCAP_API_KEYS=long-random-key:alice -e REDIS_URL=redis://... vidcap-api

# The project's sources minus models/checkpoints, copied whole into the image below.
FROM python:3.11-slim AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY vidcap/ vidcap/
COPY settings/ settings/
COPY app/ app/
COPY workers/ workers/
COPY models/ models/
RUN rm -rf models/checkpoints

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    VIDCAP_DATA_DIR=/var/lib/vidcap/media

# The same uid in the api and worker images, so both can write the shared media volume.
# A named volume copies the ownership of the directory it is mounted over on first use.
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin vidcap \
    && install -d -o vidcap -g vidcap /var/lib/vidcap/media \
    && python -m venv "$VIRTUAL_ENV"

WORKDIR /app

# Dependencies first, read from pyproject.toml, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY --from=source /src/ ./
# Dependencies are already in place; --no-deps keeps this layer to the project itself.
RUN pip install --no-cache-dir --no-deps . \
    && pip check \
    && rm -rf build ./*.egg-info

USER vidcap

EXPOSE 8000

# slim has no curl; urlopen raises (exit 1) on a refused connection or a non-2xx status.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# 0.0.0.0: the container's own loopback is unreachable from outside it. Which host address
# the port is published on is docker's choice (-p / compose's ports).
CMD ["vidcap", "serve", "--host", "0.0.0.0", "--port", "8000"]
