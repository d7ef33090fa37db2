"""Sentence embeddings with all-MiniLM-L6-v2, pooled as sentence-transformers pools them.

Used to find the moments of a video that a question is about (transcript segments, on-screen
text, tags): the cosine similarity of two embeddings is their dot product, since each vector
is L2-normalised.

>>> embedder = TextEmbedder()
>>> vectors = embedder.embed(["a dog on a porch", "what animal is in the video?"])  # (2, 384)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModel, AutoTokenizer

from models.device import default_device
from models.perception.weights import verified

DIMENSION = 384
MAX_TOKENS = 256  # the model was trained on inputs of at most 256 word pieces


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states where ``mask`` is 1: (B, L, H), (B, L) -> (B, H)."""
    weights = mask.unsqueeze(-1).to(states.dtype)  # (B, L, 1)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class TextEmbedder:
    """all-MiniLM-L6-v2 (the official weights, checked by sha256) on one device.

    Args:
        device: Where to run (default: CUDA when present).
        batch_size: Sentences per forward pass.
    """

    def __init__(self, *, device: str | torch.device | None = None, batch_size: int = 64) -> None:
        folder = verified("minilm")[0].parent
        self.device = torch.device(device) if device is not None else default_device()
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder, dtype=dtype).to(self.device).eval()
        self.batch_size = batch_size

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised float32 embeddings, (N, 384), on the CPU; (0, 384) for no texts."""
        out: list[torch.Tensor] = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[i : i + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            ).to(self.device)
            states = self.model(**batch).last_hidden_state  # (B, L, 384)
            pooled = mean_pool(states.float(), batch["attention_mask"])  # (B, 384)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, DIMENSION)

    def similarity(self, queries: Sequence[str], texts: Sequence[str]) -> torch.Tensor:
        """Cosine similarity of each query to each text, (Q, N)."""
        return self.embed(queries) @ self.embed(texts).T
