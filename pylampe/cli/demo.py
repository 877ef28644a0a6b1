"""The passkey demo: a document longer than the trained window with one fact in it."""

from __future__ import annotations

import random
from typing import Callable, Tuple

INTRO = (
    "There is an important piece of information hidden inside a lot of irrelevant text. "
    "Find it and memorize it. I will ask you about it afterwards.\n\n"
)
FILLER = (
    "The grass is green. The sky is blue. The sun is yellow. "
    "Here we go. There and back again. "
)
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key. "
QUESTION = "\n\nWhat is the pass key? The pass key is"


def passkey_prompt(
    n_tokens: int, count_tokens: Callable[[str], int], seed: int = 0
) -> Tuple[str, str]:
    """About ``n_tokens`` tokens of filler, a 5-digit pass key in the middle, the question last.

    Returns (prompt, pass key).
    """
    key = str(random.Random(seed).randint(10000, 99999))
    per_filler = count_tokens(FILLER * 8) / 8
    fixed = count_tokens(INTRO + NEEDLE.format(key=key) + QUESTION)
    n = max(2, round((n_tokens - fixed) / per_filler))
    half = n // 2
    prompt = INTRO + FILLER * half + NEEDLE.format(key=key) + FILLER * (n - half) + QUESTION
    return prompt, key
