"""Which texts the PII guard may leave unanalysed (``guards.pii_triggers``): only those in which no
entity its rule counts can be found. A text an attacker shapes to dodge the trigger must still be
analysed whenever a recogniser could match it."""

from __future__ import annotations

import pytest

from guards.pii_triggers import trigger_pattern
from guards.policy import CONTEXT_FREE_PII

OUTPUT = trigger_pattern(CONTEXT_FREE_PII)


def test_plain_prose_needs_no_analysis_for_the_default_output_entities() -> None:
    assert OUTPUT is not None
    assert not OUTPUT.search("The harbour town wakes early, long before the first ferry leaves.")


@pytest.mark.parametrize(
    "text",
    [
        "Call me on 555 0100 tonight.",  # phone
        "Card \uff14\uff11\uff11\uff11 in fullwidth digits",  # Unicode digits count (presidio: \d)
        "Write to someone@example.org",  # e-mail: no digit at all
        "The host is dead:beef::cafe now",  # IPv6 spelled in letters only
        "Account ٣٤٥",  # Arabic-Indic digits
    ],
)
def test_text_that_could_hold_a_context_free_entity_is_analysed(text: str) -> None:
    assert OUTPUT is not None
    assert OUTPUT.search(text)


def test_email_split_so_only_the_at_sign_is_in_the_window_context_is_still_analysed() -> None:
    """The trigger is looked for in the whole checked text (context + new text), so an address whose
    ``@`` was in the part already released is still seen whole."""
    assert OUTPUT is not None
    assert OUTPUT.search("mail ann@exa" + "mple.org today")


@pytest.mark.parametrize("entities", [["PERSON"], ["EMAIL_ADDRESS", "LOCATION"], ["MY_CUSTOM_ID"], []])
def test_entities_with_no_known_trigger_are_always_analysed(entities: list[str]) -> None:
    assert trigger_pattern(entities) is None


def test_only_the_counted_entities_decide() -> None:
    emails = trigger_pattern(["EMAIL_ADDRESS"])
    assert emails is not None
    assert not emails.search("Room 101 is on floor 3.")
    assert emails.search("a@b.co")
