"""The passkey demo: a document longer than the trained window with one fact in it."""

from ..eval.passkey import passkey_prompt

__all__ = ["passkey_prompt"]
