"""A process's children as an operator's ``ps`` shows them (psutil): what the tests of child processes
(presidio's, a worker's, the embedded servers') and the throughput benchmark's CPU count look at."""

from __future__ import annotations

import time

import psutil


def children(pid: int, *, recursive: bool = False) -> set[int]:
    """The living children of ``pid`` (and theirs, ``recursive``); none once it is gone."""
    try:
        found = psutil.Process(pid).children(recursive=recursive)
    except psutil.NoSuchProcess:
        return set()
    return {child.pid for child in found if alive(child.pid)}


def model_children(pid: int) -> set[int]:
    """The children ``pid`` spawned with multiprocessing to serve a model (``guards.child_process``), not
    multiprocessing's own resource tracker."""
    return {child for child in children(pid) if "spawn_main" in " ".join(_cmdline(child))}


def alive(pid: int) -> bool:
    """Running: an exited process not yet reaped by its parent (a zombie) is gone for our purposes."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pid: int, seconds: float = 15.0) -> bool:
    """Whether ``pid`` is gone within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU so far of ``pid`` and its living descendants (all their threads)."""
    total = 0.0
    try:
        members = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return total
    for member in members:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue  # gone since it was listed
        total += times.user + times.system
    return total


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.NoSuchProcess:
        return []
