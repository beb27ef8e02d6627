"""What normalising costs (``guards.normalise``): both views of one text, for texts of growing size and of
the kinds that make each step work. Time per character should stay flat as texts grow (linear time).
Writes results/normalise_views.md.

    .venv/bin/python -m tests.benchmarks.normalise_views
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path

from guards.normalise import TextView, views

RESULTS = Path(__file__).parent / "results" / "normalise_views.md"
PROSE = "The quick brown fox jumps over the lazy dog, and then writes to bob@example.com. "
KINDS: dict[str, Callable[[int], str]] = {
    "ASCII prose": lambda n: (PROSE * (n // len(PROSE) + 1))[:n],
    "fullwidth": lambda n: "".join(
        chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in PROSE * (n // 80 + 1)
    )[:n],
    "zero-width between letters": lambda n: ("f\u200bu\u200bc\u200bk " * (n // 8 + 1))[:n],
    "spaced letters": lambda n: ("f u c k " * (n // 8 + 1))[:n],
    "leetspeak": lambda n: ("sh1t h3ad 4$$ " * (n // 14 + 1))[:n],
    "Cyrillic look-alikes": lambda n: ("fuсk уоu " * (n // 9 + 1))[:n],  # noqa: RUF001
    "Japanese": lambda n: ("今日はいい天気ですね。" * (n // 11 + 1))[:n],
    "one long word": lambda n: "a" * n,
    "'<document>' repeated": lambda n: ("<document>" * (n // 10 + 1))[:n],
}
SIZES = [10_000, 100_000, 1_000_000]
BOTH = {TextView.CANONICAL, TextView.DEOBFUSCATED}


def _seconds(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        views(text, BOTH)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    lines = [
        "# Normalising: both views of one text",
        "",
        f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}; best of 3.",
        "",
        "| text | " + " | ".join(f"{n:,} chars" for n in SIZES) + " | ns/char at 1M ÷ at 10k |",
        "|---|" + "---|" * (len(SIZES) + 1),
    ]
    for kind, make in KINDS.items():
        times = [_seconds(make(n)) for n in SIZES]
        per_char = [t / n * 1e9 for t, n in zip(times, SIZES, strict=True)]
        cells = " | ".join(
            f"{t * 1000:.1f} ms ({p:.0f} ns/char)" for t, p in zip(times, per_char, strict=True)
        )
        lines.append(f"| {kind} | {cells} | {per_char[-1] / per_char[0]:.2f} |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
