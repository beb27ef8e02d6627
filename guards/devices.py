"""Where a model runs: CUDA with half precision when there is a GPU, the CPU otherwise."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

DevicePreference = Literal["auto", "cpu", "cuda"]


class Placement(msgspec.Struct, frozen=True):
    device: str
    half_precision: bool

    @property
    def key(self) -> str:
        return f"{self.device}:{'fp16' if self.half_precision else 'fp32'}"


def choose_placement(preference: DevicePreference = "auto") -> Placement:
    import torch  # imported here: only guards that run torch models pay for it

    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return Placement("cpu", half_precision=False)
    if not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for, but torch sees no CUDA device")
    return Placement("cuda", half_precision=True)


def place_model(model: Any, placement: Placement) -> Any:
    """Move a torch module to its device, in fp16 on CUDA, in eval mode."""
    model = model.to(placement.device)
    if placement.half_precision:
        model = model.half()
    return model.eval()
