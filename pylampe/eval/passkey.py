"""The passkey prompt: a 5-digit key hidden at a chosen depth of a long haystack."""

from __future__ import annotations

import random
from typing import Callable, Tuple

from .haystack import REPEAT, Haystack

INTRO = (
    "There is an important piece of information hidden inside a lot of irrelevant text. "
    "Find it and memorize it. I will ask you about it afterwards.\n\n"
)
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key. "
QUESTION = "\n\nWhat is the pass key? The pass key is"


def passkey(seed: int) -> str:
    """The 5-digit key for a seed."""
    return str(random.Random(seed).randint(10000, 99999))


def answer(key: str) -> str:
    """The text that completes QUESTION correctly."""
    return f" {key}"


def passkey_prompt(
    n_tokens: int,
    count_tokens: Callable[[str], int],
    seed: int = 0,
    depth: float = 0.5,
    haystack: Haystack = Haystack(REPEAT),
) -> Tuple[str, str]:
    """At most ``n_tokens`` tokens (as close as whole haystack units allow): the intro,
    the haystack with the needle after the fraction ``depth`` of it, the question last.

    Returns (prompt, pass key).

    Raises:
        ValueError: the prompt without haystack is already longer, or a
            document haystack runs out before ``n_tokens``.
    """
    key = passkey(seed)
    needle = NEEDLE.format(key=key)

    def build(n: int) -> str:
        units = haystack.units(n)
        cut = int(n * depth)
        return INTRO + "".join(units[:cut]) + needle + "".join(units[cut:]) + QUESTION

    n_fixed = count_tokens(build(0))
    if n_fixed > n_tokens:
        raise ValueError(f"a passkey prompt needs more than {n_tokens} tokens: {n_fixed} without haystack")
    # The largest unit count that fits: every unit is at least one token.
    lo, hi = 0, n_tokens if haystack.max_units is None else min(n_tokens, haystack.max_units)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(build(mid)) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    if lo == haystack.max_units:
        raise ValueError(f"the haystack {haystack.name} is too short for a {n_tokens}-token prompt")
    return build(lo), key
