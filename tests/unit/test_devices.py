"""Device and precision choice: CUDA in fp16 when there is a GPU, the CPU in bf16 or fp32 otherwise."""

from __future__ import annotations

import pytest
import torch

from guards import devices
from guards.devices import choose_placement, inference_context, place_model


def test_cpu_without_native_bf16_is_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert choose_placement().key == "cpu:fp32"


def test_cpu_with_native_bf16_autocasts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    placement = choose_placement()
    assert placement.key == "cpu:bf16"
    layer = place_model(torch.nn.Linear(4, 2), placement)
    with inference_context(placement)():
        out = layer(torch.ones(1, 4))
    assert out.dtype == torch.bfloat16
    assert next(layer.parameters()).dtype == torch.float32  # weights stay fp32; only the matmuls drop


def test_gpu_means_cuda_fp16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_placement().key == "cuda:fp16"
    assert choose_placement(precision="fp32").key == "cuda:fp32"


def test_impossible_asks_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        choose_placement("cuda")
    with pytest.raises(RuntimeError, match="fp16 needs a CUDA device"):
        choose_placement("cpu", "fp16")
