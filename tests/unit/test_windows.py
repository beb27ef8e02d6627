"""Stream windows: nothing lost or duplicated, boundaries respected, work linear."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from guards.windows import WindowCutter


def _drive(text: str, pieces: list[int], cutter: WindowCutter) -> tuple[str, int, list[str]]:
    released, checked, windows = "", 0, []
    position = 0
    for size in [*pieces, len(text)]:
        cutter.append(text[position : position + size])
        position += size
        while (window := cutter.next_window()) is not None:
            windows.append(window.text)
            checked += len(window.checked)
            released += window.text[: window.release]
            cutter.commit(window, window.release)
        if position >= len(text):
            break
    final = cutter.next_window(final=True)
    if final is not None:
        windows.append(final.text)
        checked += len(final.checked)
        released += final.text
        cutter.commit(final, final.release)
    return released, checked, windows


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("ab .!?\n"), max_size=2000),
    pieces=st.lists(st.integers(min_value=1, max_value=50), max_size=200),
)
def test_release_is_exactly_the_text_and_work_is_linear(text: str, pieces: list[int]) -> None:
    cutter = WindowCutter(min_chars=10, max_chars=60, overlap_chars=16)
    released, checked, _ = _drive(text, pieces, cutter)
    assert released == text
    # Each character checked at most twice (a forced cut re-checks the held-back overlap) plus context.
    assert checked <= 3 * len(text) + 16


def test_windows_end_at_sentence_ends() -> None:
    cutter = WindowCutter(min_chars=10, max_chars=200, overlap_chars=8)
    text = "First sentence here. Second one is here! Third? Tail without end"
    _, _, windows = _drive(text, [3] * 30, cutter)
    assert windows == ["First sentence here. ", "Second one is here! ", "Third? Tail without end"]


def test_forced_cuts_hold_back_the_overlap() -> None:
    cutter = WindowCutter(min_chars=5, max_chars=20, overlap_chars=8)
    cutter.append("aaaa bbbb cccc dddd eeee ffff")
    window = cutter.next_window()
    assert window is not None
    assert window.text == "aaaa bbbb cccc dddd "
    assert window.release == len("aaaa bbbb ")  # the last 8+ characters come back in the next window
    cutter.commit(window, window.release)
    following = cutter.next_window(final=True)
    assert following is not None
    assert following.context.endswith("bbbb ")
    assert following.text.startswith("cccc dddd")


def test_a_decimal_point_is_not_a_sentence_end() -> None:
    cutter = WindowCutter(min_chars=2, max_chars=100, overlap_chars=4)
    cutter.append("Pi is 3.14159 roughly")
    assert cutter.next_window() is None
