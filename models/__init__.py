"""Pure ML: the media layer, the feature backbones, VideoBERT fusion and the BART captioner.

Importing this package is cheap (no torch): the heavy modules are imported where used.
"""

from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
# The model vidcap uses when none is named: the grounded captioner, which reads what the
# perception experts found (trained on the everyday world and shipped).
DEFAULT_MODEL_DIR = CHECKPOINTS / "default"
# The captioner of the synthetic shapes-and-tones world (pixels and tones in, captions out).
WORLD_MODEL_DIR = CHECKPOINTS / "world"
