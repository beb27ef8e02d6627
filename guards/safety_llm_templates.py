"""What the ``safety_llm`` guard says to each family of safety classifier, and how it reads the answer:
one declarative entry per family, so a new safety model is data, not code.

An entry says:

- ``api``: ``chat`` (``/chat/completions``) or ``completions`` (``/completions``, a raw prompt);
- ``prompt_input`` / ``prompt_output``: the prompt the gateway renders, or None to send the conversation
  itself as chat messages and let the model server apply the model's own chat template (which is how
  vLLM, TGI and llama.cpp serve Llama Guard and Granite Guardian, and how their model cards use them);
- ``unsafe_pattern`` / ``safe_pattern``: regular expressions on the model's text; an answer that matches
  neither is malformed (the rule's ``on_error`` applies);
- ``codes_pattern`` and ``codes``: category codes in an unsafe answer (Llama Guard's ``S10``), and the
  gateway category each stands for;
- ``unsafe_token`` / ``safe_token``: the first tokens whose log probabilities give a score, when the
  server returns them (ShieldGemma's documented use: P(Yes) against P(No));
- ``policies``: one call per policy, for models that judge one policy at a time (ShieldGemma's harm
  types, Granite Guardian's risks), each with the gateway category it stands for;
- ``reserved``: markers of the model's prompt format that client text must not carry (a client that
  writes ``<|eot_id|>`` or ``<end_of_turn>`` could otherwise close the turn and answer for the model).

Placeholders in prompts: ``{user}`` (the user's text), ``{answer}`` (the answer judged, output only),
``{conversation}`` (``User: ...`` and ``Agent: ...`` turns), ``{role}`` (``User`` or ``Agent``: whose
message is judged), ``{policy}`` (the policy of this call), ``{categories}`` (the category list).
"""

from __future__ import annotations

import string
from typing import Literal

import msgspec

Api = Literal["chat", "completions"]
PLACEHOLDERS = frozenset({"user", "answer", "conversation", "role", "policy", "categories"})
UNSAFE = "unsafe"  # the category of an unsafe verdict that names no (known) category


class PolicyCheck(msgspec.Struct, frozen=True, kw_only=True):
    """One policy judged by one call: the gateway category it stands for, its text per stage (for
    ``{policy}``), and chat-template arguments (vLLM's ``chat_template_kwargs``)."""

    category: str
    input: str = ""
    output: str = ""
    chat_template_kwargs: dict[str, object] = {}


class SafetyTemplate(msgspec.Struct, frozen=True, kw_only=True):
    api: Api
    prompt_input: str | None = None
    prompt_output: str | None = None
    unsafe_pattern: str
    safe_pattern: str
    codes_pattern: str | None = None
    codes: dict[str, str] = {}
    # Code -> the name in the category list of a rendered prompt (Llama Guard's "S1: Violent Crimes.").
    code_names: dict[str, str] = {}
    unsafe_token: str | None = None
    safe_token: str | None = None
    policies: dict[str, PolicyCheck] = {}
    default_policies: tuple[str, ...] = ()
    max_tokens: int = 16
    reserved: tuple[str, ...] = ()

    def categories(self) -> list[str]:
        found = [*self.codes.values(), *(p.category for p in self.policies.values()), UNSAFE]
        return list(dict.fromkeys(found))


def placeholders(prompt: str) -> set[str]:
    """The named fields of a prompt; raises ValueError on a malformed one (a lone ``{``)."""
    return {name for _, name, _, _ in string.Formatter().parse(prompt) if name is not None}


# --- Llama Guard 3 and 4 (Meta): S1-S14, the MLCommons hazard taxonomy -----------------------------

# Mapped onto the gateway's vocabulary: the OpenAI moderation names (snake_case) where one fits, so
# ``/v1/moderations`` reports them under OpenAI's categories (``gateway.guarded.moderation``).
LLAMA_GUARD_CODES = {
    "S1": "violence",  # Violent Crimes
    "S2": "illicit",  # Non-Violent Crimes
    "S3": "sex_crimes",  # Sex-Related Crimes
    "S4": "sexual_minors",  # Child Sexual Exploitation
    "S5": "defamation",
    "S6": "specialized_advice",
    "S7": "privacy",
    "S8": "intellectual_property",
    "S9": "weapons",  # Indiscriminate Weapons (CBRNE)
    "S10": "hate",
    "S11": "self_harm",  # Suicide & Self-Harm
    "S12": "sexual",  # Sexual Content
    "S13": "elections",
    "S14": "code_interpreter_abuse",
}
LLAMA_GUARD_NAMES = {
    "S1": "Violent Crimes.",
    "S2": "Non-Violent Crimes.",
    "S3": "Sex Crimes.",
    "S4": "Child Exploitation.",
    "S5": "Defamation.",
    "S6": "Specialized Advice.",
    "S7": "Privacy.",
    "S8": "Intellectual Property.",
    "S9": "Indiscriminate Weapons.",
    "S10": "Hate.",
    "S11": "Self-Harm.",
    "S12": "Sexual Content.",
    "S13": "Elections.",
    "S14": "Code Interpreter Abuse.",
}
# The model card's prompt, for servers that take a raw prompt (``api: completions``); no
# ``<|begin_of_text|>``: servers add the BOS token themselves.
_LLAMA_GUARD_PROMPT = (
    "<|start_header_id|>user<|end_header_id|>\n\n"
    "Task: Check if there is unsafe content in '{role}' messages in conversations according our safety "
    "policy with the below categories.\n\n"
    "<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
    "<BEGIN CONVERSATION>\n\n{conversation}\n\n<END CONVERSATION>\n\n"
    "Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n"
    " - First line must read 'safe' or 'unsafe'.\n"
    " - If unsafe, a second line must include a comma-separated list of violated categories."
    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
)

LLAMA_GUARD = SafetyTemplate(
    # Chat by default: the server applies Llama Guard's own chat template, which holds the S1-S14 list
    # (Meta's model card: ``tokenizer.apply_chat_template(conversation)``; vLLM serves it so).
    api="chat",
    prompt_input=_LLAMA_GUARD_PROMPT,  # used with ``api: completions`` only
    prompt_output=_LLAMA_GUARD_PROMPT,
    unsafe_pattern=r"^\s*unsafe\b",
    safe_pattern=r"^\s*safe\b",
    codes_pattern=r"\bS\d{1,2}\b",
    codes=LLAMA_GUARD_CODES,
    code_names=LLAMA_GUARD_NAMES,
    unsafe_token="unsafe",
    safe_token="safe",
    max_tokens=20,
    reserved=(r"<\|[^|<>\s]{1,40}\|>", r"<\s*/?\s*(BEGIN|END) [A-Z ]{1,40}>"),
)

# --- ShieldGemma (Google): one harm type per call, P(Yes) ------------------------------------------

_SHIELDGEMMA_INPUT = (
    "You are a policy expert trying to help determine whether a user prompt is in violation of the "
    "defined safety policies.\n\n"
    "<start_of_turn>\nHuman Question: {user}\n<end_of_turn>\n\n"
    "Our safety principle is defined in the below:\n\n* {policy}\n\n"
    "Does the human question violate the above principle? Your answer must start with 'Yes' or 'No'. "
    "And then walk through step by step to be sure we answer correctly.\n\n"
)
_SHIELDGEMMA_OUTPUT = (
    "You are a policy expert trying to help determine whether an AI response to prompt is in violation "
    "of the defined safety policies.\n\n"
    "<start_of_turn>\nHuman Question: {user}\n<end_of_turn>\n\n"
    "<start_of_turn>\nChatbot Response: {answer}\n<end_of_turn>\n\n"
    "Our safety principle is defined in the below:\n\n* {policy}\n\n"
    "Does the Chatbot Response violate the above principle? Your answer must start with 'Yes' or 'No'. "
    "And then walk through step by step to be sure we answer correctly.\n\n"
)


def _shieldgemma(category: str, name: str, what: str) -> PolicyCheck:
    return PolicyCheck(
        category=category,
        input=f'"{name}": The prompt shall not contain or seek generation of content that {what}',
        output=f'"{name}": The chatbot shall not generate content that {what}',
    )


SHIELDGEMMA = SafetyTemplate(
    # A raw prompt: the model card renders this prompt and compares the next token's Yes/No logits.
    api="completions",
    prompt_input=_SHIELDGEMMA_INPUT,
    prompt_output=_SHIELDGEMMA_OUTPUT,
    unsafe_pattern=r"^\s*yes\b",
    safe_pattern=r"^\s*no\b",
    unsafe_token="Yes",
    safe_token="No",
    policies={
        "dangerous_content": _shieldgemma(
            "dangerous",
            "No Dangerous Content",
            "harming oneself and/or others (e.g., accessing or building firearms and explosive devices, "
            "promotion of terrorism, instructions for suicide).",
        ),
        "harassment": _shieldgemma(
            "harassment",
            "No Harassment",
            "is malicious, intimidating, bullying, or abusive content targeting another individual (e.g., "
            "physical threats, denial of tragic events, disparaging victims of violence).",
        ),
        "hate_speech": _shieldgemma(
            "hate",
            "No Hate Speech",
            "targeting identity and/or protected attributes (e.g., racial slurs, promotion of "
            "discrimination, calls to violence against protected groups) or dehumanizing/belittling/"
            "vilifying on the bases of race, ethnicity, religion, disability, age, nationality, veteran "
            "status, sexual orientation, gender, gender identity, caste, or any other protected status. "
            "We do allow content that includes a reference to a protected individual or group in a "
            "positive manner.",
        ),
        "sexually_explicit": _shieldgemma(
            "sexual",
            "No Sexually Explicit Information",
            "contains references to sexual acts or other lewd content (e.g., sexually graphic "
            "descriptions, content aimed at causing arousal). Medical or scientific terms related to "
            "human anatomy or sex education are permitted.",
        ),
    },
    default_policies=("dangerous_content", "harassment", "hate_speech", "sexually_explicit"),
    max_tokens=3,
    reserved=(r"</?\s*(start_of_turn|end_of_turn|bos|eos)\s*>",),
)

# --- Granite Guardian (IBM): one risk per call, Yes/No --------------------------------------------


def _granite(category: str, risk: str) -> PolicyCheck:
    # The model card passes ``guardian_config={"risk_name": ...}`` to ``apply_chat_template``; vLLM takes
    # it as ``chat_template_kwargs``. Other servers apply the template's default risk (``harm``).
    return PolicyCheck(category=category, chat_template_kwargs={"guardian_config": {"risk_name": risk}})


GRANITE_GUARDIAN = SafetyTemplate(
    api="chat",
    # "Yes"/"No" (3.0, 3.1), "Yes\n<confidence> High </confidence>" (3.2), "<score> yes </score>" (3.3,
    # thinking off).
    unsafe_pattern=r"^\s*(<score>\s*)?yes\b",
    safe_pattern=r"^\s*(<score>\s*)?no\b",
    unsafe_token="Yes",
    safe_token="No",
    policies={
        "harm": _granite("harm", "harm"),
        "social_bias": _granite("social_bias", "social_bias"),
        "jailbreak": _granite("jailbreak", "jailbreak"),
        "violence": _granite("violence", "violence"),
        "profanity": _granite("obscene", "profanity"),  # the toxicity guard's name for it
        "sexual_content": _granite("sexual", "sexual_content"),
        "unethical_behavior": _granite("unethical_behavior", "unethical_behavior"),
    },
    default_policies=("harm",),
    max_tokens=12,
    reserved=(
        r"<\|[^|<>\s]{1,40}\|>",
        r"</?\s*(start_of_turn|end_of_turn|start_of_risk_definition|"
        r"end_of_risk_definition|score|think)\s*>",
    ),
)

BUILTIN: dict[str, SafetyTemplate] = {
    "llama_guard": LLAMA_GUARD,
    "shieldgemma": SHIELDGEMMA,
    "granite_guardian": GRANITE_GUARDIAN,
}
