"""Pure ML: the media layer, the feature backbones, VideoBERT fusion and the BART captioner.

Importing this package is cheap (no torch): the heavy modules are imported where used.
"""

from pathlib import Path

# The model vidcap uses when none is named (trained on the synthetic world and shipped).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "checkpoints" / "default"
