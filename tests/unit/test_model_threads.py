"""Model calls get a bounded number of CPU threads (``gateway.server.model_threads``)."""

from __future__ import annotations

import pytest

from gateway.server.model_threads import limit_model_threads
from gateway.settings import settings_from_mapping


def test_the_setting_sets_the_thread_variables_before_models_load() -> None:
    environ: dict[str, str] = {}
    assert limit_model_threads(3, environ) == 3
    assert environ == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}


def test_the_default_is_half_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    environ: dict[str, str] = {}
    assert limit_model_threads(None, environ) == 4


def test_an_operators_own_environment_wins() -> None:
    environ = {"OMP_NUM_THREADS": "6"}
    assert limit_model_threads(2, environ) == 6
    assert environ["MKL_NUM_THREADS"] == "2"


def test_torch_already_loaded_is_told_too() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        limit_model_threads(1, {})
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_thread_count_below_one_is_a_config_error_naming_the_key() -> None:
    from gateway.settings import ConfigError

    with pytest.raises(ConfigError, match=r"server\.model_threads"):
        settings_from_mapping({"server": {"model_threads": 0}}, environ={})
