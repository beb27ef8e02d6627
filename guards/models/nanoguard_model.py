"""NanoGuard (``metatronnanoguard`` on PyPI, MIT): a 16.8M-parameter prompt-injection classifier whose
weights and tokenizer ship inside the package, loaded through the package and run here.

As shipped, every text is padded to 512 tokens, and its attention has **no mask**: the pads are attended
to, so they change the score (a short benign text scores 0.003 padded to 512 and 0.24 alone; only the
pooling is masked). Two ways to run it, ``padding``:

- ``dynamic`` (the default): each batch is padded to its longest text and the attention is masked, so a
  text's score does not depend on its batch or its padding, and a short text costs a fraction of 512
  tokens (about 20x faster here). Scores differ from the shipped ones because the pads no longer speak.
- ``shipped``: 512 tokens, pads attended, exactly the package's own ``NanoGuard.scan`` scores.

Which one the gateway defaults to was decided on the labelled set (docs/guards/injection.md).

A text longer than the model reads is judged whole: cut into overlapping windows of ``window_tokens``,
each read on its own, the text's score the highest window's (an injection at the end is not cut off).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from guards.devices import DevicePreference, Placement, Precision, choose_placement

Padding = Literal["dynamic", "shipped"]

SEQUENCE_LEN = 512  # what the shipped model was trained on (its rotary tables cover twice that)


class LoadedNanoGuard(msgspec.Struct):
    predict: Callable[[list[str]], list[float]]  # per text, the probability of injection (max over windows)
    placement: Placement


def token_windows(ids: list[int], width: int, overlap: int) -> list[list[int]]:
    """``ids`` cut into windows of at most ``width``, each overlapping the previous by ``overlap`` (so an
    injection that straddles a cut is read whole in one window, up to ``overlap`` tokens long).

    >>> token_windows(list(range(10)), 4, 1)
    [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    >>> token_windows([1, 2], 4, 1), token_windows([], 4, 1)
    ([[1, 2]], [[]])
    """
    if len(ids) <= width:
        return [ids]
    step = width - overlap
    starts = range(0, max(len(ids) - overlap, 1), step)
    return [ids[start : start + width] for start in starts if start == 0 or start + overlap < len(ids)]


def load_nanoguard(
    device: DevicePreference = "auto",
    precision: Precision = "auto",
    padding: Padding = "dynamic",
    window_tokens: int = SEQUENCE_LEN,
    window_overlap: int = 64,
) -> LoadedNanoGuard:
    import torch
    import torch.nn.functional as F
    from nanoguard import NanoGuard

    placement = choose_placement(device, precision)
    shipped = NanoGuard(device="cpu")  # the package loads its bundled checkpoint and tokenizer
    model = shipped.model.to(placement.device).eval()
    tokenizer = shipped.tokenizer
    width = min(window_tokens, SEQUENCE_LEN)
    if not 0 <= window_overlap < width - 1:
        raise ValueError("window_overlap must be below window_tokens - 1")
    autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(placement.precision)

    def encode(text: str) -> list[list[int]]:
        """The text's windows, each with the BOS token the model was trained to read first."""
        body = tokenizer.enc.encode_ordinary(text)
        return [[tokenizer.bos_token_id, *w] for w in token_windows(body, width - 1, window_overlap)]

    @torch.inference_mode()
    def score_windows(windows: list[list[int]]) -> list[float]:
        length = SEQUENCE_LEN if padding == "shipped" else max(map(len, windows))
        ids = torch.full((len(windows), length), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(windows), length, dtype=torch.bool)
        for row, window in enumerate(windows):
            ids[row, : len(window)] = torch.tensor(window, dtype=torch.long)
            mask[row, : len(window)] = True
        ids, mask = ids.to(placement.device), mask.to(placement.device)
        attend = mask if padding == "dynamic" else None
        if autocast_dtype is not None:
            with torch.autocast(placement.device, dtype=autocast_dtype):
                logits = _forward(model, ids, mask, attend)
        else:
            logits = _forward(model, ids, mask, attend)
        return F.softmax(logits.float(), dim=-1)[:, 1].cpu().tolist()

    def predict(texts: list[str]) -> list[float]:
        per_text = [encode(text) for text in texts]
        flat = [window for windows in per_text for window in windows]
        scores = score_windows(flat)
        out, offset = [], 0
        for windows in per_text:
            out.append(max(scores[offset : offset + len(windows)]))
            offset += len(windows)
        return out

    return LoadedNanoGuard(predict, placement)


def _forward(model: Any, ids: Any, mask: Any, attend: Any) -> Any:
    """The package's ``Classifier.forward``, with the attention optionally masked (``attend``: which keys
    are real tokens; None attends to every position, pads included, as shipped)."""
    _, length = ids.size()
    cos_sin = model.cos[:, :length], model.sin[:, :length]
    keys = None if attend is None else attend[:, None, None, :]
    x = _norm(model.transformer.wte(ids))
    x0 = x
    for index, block in enumerate(model.transformer.h):
        x = model.resid_lambdas[index] * x + model.x0_lambdas[index] * x0
        x = x + _attention(block.attn, _norm(x), cos_sin, keys)
        x = x + block.mlp(_norm(x))
    x = _norm(x)
    weights = mask.unsqueeze(-1).to(x.dtype)
    pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
    return model.cls_head(model.cls_norm(pooled).float())


def _norm(x: Any) -> Any:
    import torch.nn.functional as F

    return F.rms_norm(x, (x.size(-1),))


def _rotary(x: Any, cos: Any, sin: Any) -> Any:
    """The package's ``apply_rotary_emb``."""
    import torch

    half = x.shape[3] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos], 3)


def _attention(attn: Any, x: Any, cos_sin: tuple[Any, Any], keys: Any) -> Any:
    """``BidirectionalAttention.forward`` with an optional key mask."""
    import torch.nn.functional as F

    batch, length, _ = x.size()
    q = attn.c_q(x).view(batch, length, attn.n_head, attn.head_dim)
    k = attn.c_k(x).view(batch, length, attn.n_kv_head, attn.head_dim)
    v = attn.c_v(x).view(batch, length, attn.n_kv_head, attn.head_dim)
    cos, sin = cos_sin
    q, k = _norm(_rotary(q, cos, sin)), _norm(_rotary(k, cos, sin))
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)
    return attn.c_proj(y.transpose(1, 2).contiguous().view(batch, length, -1))
