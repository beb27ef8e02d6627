"""Where a model runs, and in what precision.

``auto``: CUDA in fp16 when there is a GPU; otherwise the CPU, in bfloat16 (autocast) when the CPU
computes bfloat16 natively (AVX512-BF16 or AMX), which measured about 3x fp32 for BERT-base here, and
fp32 elsewhere. Scores then differ from fp32 in the second or third decimal; ``precision: fp32``
gives exact parity with the published checkpoints' reference numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Literal

import msgspec

DevicePreference = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "fp16", "bf16"]


class Placement(msgspec.Struct, frozen=True):
    device: str
    precision: Literal["fp32", "fp16", "bf16"]

    @property
    def key(self) -> str:
        return f"{self.device}:{self.precision}"


@cache
def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_placement(preference: DevicePreference = "auto", precision: Precision = "auto") -> Placement:
    import torch  # imported here: only guards that run torch models pay for it

    use_cuda = preference == "cuda" or (preference == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for, but torch sees no CUDA device")
    if precision == "auto":
        precision = "fp16" if use_cuda else ("bf16" if cpu_has_native_bf16() else "fp32")
    if precision == "fp16" and not use_cuda:
        raise RuntimeError("precision: fp16 needs a CUDA device (use bf16 or fp32 on the CPU)")
    return Placement("cuda" if use_cuda else "cpu", precision)


def place_model(model: Any, placement: Placement) -> Any:
    """Move a torch module to its device (fp16 weights on CUDA), in eval mode."""
    model = model.to(placement.device)
    if placement.precision == "fp16":
        model = model.half()
    return model.eval()


def inference_context(placement: Placement) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """What to run a forward pass in: bf16 autocast on the CPU keeps norms and softmax in fp32."""
    import torch

    if placement.precision == "bf16":
        return lambda: torch.autocast(placement.device, dtype=torch.bfloat16)
    return contextlib.nullcontext
