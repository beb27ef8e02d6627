"""HHH Gateway's HTTP face: an OpenAI-compatible proxy that guards and records traffic."""

__version__ = "0.1.0"
