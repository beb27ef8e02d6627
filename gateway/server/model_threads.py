"""How many CPU threads one model call may use (torch's intra-op threads, OpenMP and MKL underneath).

torch takes every core by default. A gateway is not a training job: its event loop, its other guards and
the model runners' own threads need cores too, and on a small machine two threads per call fighting for
them made a reward model's forward pass twice as slow (docs/performance.md). The default leaves half the
cores to the rest. The environment's own ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` win when set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_model_threads(cores: int | None = None) -> int:
    """Half the cores, at least one.

    >>> default_model_threads(2), default_model_threads(16), default_model_threads(1)
    (1, 8, 1)
    """
    return max(1, (cores if cores is not None else os.cpu_count() or 1) // 2)


def limit_model_threads(threads: int | None, environ: MutableMapping[str, str] | None = None) -> int:
    """Set the threads before any model library starts (the variables are read when it loads); when torch
    is loaded already, tell it too. Returns the number in force."""
    environ = os.environ if environ is None else environ
    wanted = threads or default_model_threads()
    for name in THREAD_VARIABLES:
        environ.setdefault(name, str(wanted))
    in_force = int(environ["OMP_NUM_THREADS"]) if environ["OMP_NUM_THREADS"].isdigit() else wanted
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(in_force)
    return in_force
