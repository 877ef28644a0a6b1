"""A ``pylampe.Llama`` that refuses prompts the context cannot hold and measures each turn.

``chat``, ``serve`` and the chat benchmark use it. llama-cpp-python quietly
lowers ``max_tokens`` when prompt + max_tokens exceeds the context; here
that request fails instead, with the numbers. Each ``generate()`` (so each
completion or chat turn) records how many prompt tokens came from the KV
cache (llama-cpp-python keeps the longest common prefix with the previous
sequence) and how many were evaluated, with the time to the first token.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Generator, Optional, Protocol, Sequence

from .llama import Llama

# llama-cpp-python's own check, which runs before generate() for prompts >= n_ctx.
_TOO_LONG = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


class ContextOverflowError(ValueError):
    """The prompt plus the tokens to generate do not fit the context."""

    def __init__(self, prompt_tokens: int, max_tokens: Optional[int], n_ctx: int):
        if max_tokens is not None and max_tokens <= 0:
            max_tokens = None  # llama-cpp-python's "up to the context"
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.n_ctx = n_ctx
        if max_tokens is None:
            text = (f"the prompt ({prompt_tokens} tokens) leaves no room to generate in the "
                    f"context of {n_ctx} tokens")
        else:
            text = (f"the prompt ({prompt_tokens} tokens) plus {max_tokens} tokens to generate "
                    f"does not fit the context of {n_ctx} tokens")
        super().__init__(text)


class Interrupted(Exception):
    """The prompt's evaluation was interrupted (see ``MeteredLlama.interrupt``)."""


class _Measured(Exception):
    """Raised by generate() during a dry run: the prompt's length, nothing evaluated."""

    def __init__(self, n_tokens: int):
        self.n_tokens = n_tokens


@dataclass
class TurnStats:
    """One generate() call: prompt tokens reused from the KV cache or evaluated, and timings."""

    prompt_tokens: int
    reused_tokens: int = 0
    prefill_tokens: int = 0
    generated_tokens: int = 0
    prefill_s: float = 0.0
    ttft_s: float = 0.0  # from the call to the first generated token (prefill included)
    decode_s: float = 0.0  # from the first generated token to the last

    @property
    def prefill_rate(self) -> float:
        return self.prefill_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_rate(self) -> float:
        """Tokens per second after the first one."""
        n = self.generated_tokens - 1
        return n / self.decode_s if n > 0 and self.decode_s > 0 else 0.0

    def as_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "prefill_rate": self.prefill_rate, "decode_rate": self.decode_rate}


class Progress(Protocol):
    """What MeteredLlama reports prefill progress to (see cli.progress.PrefillProgress)."""

    def start(self, total: int) -> None: ...

    def advance(self, n: int) -> None: ...


class MeteredLlama(Llama):
    """``pylampe.Llama`` plus: refused overflows, per-turn stats, prefill progress, interruption.

    ``last_turn`` holds the stats of the latest generate(). Set ``progress``
    to an object with ``start(total)`` and ``advance(n)`` to follow prefills
    (they are then evaluated n_batch tokens per call, all with the prompt's L).
    Set ``interrupt`` to a function that says when to stop: it is asked
    between those n_batch-token calls (True raises Interrupted, the tokens
    evaluated so far stay in the KV cache) and before each generated token
    (True ends the answer there, as an end-of-text token would).
    """

    def __init__(self, model_path: str, **kwargs: Any):
        self.progress: Optional[Progress] = None
        self.interrupt: Optional[Callable[[], bool]] = None
        self.last_turn: Optional[TurnStats] = None
        self._turn: Optional[TurnStats] = None
        self._max_tokens: Optional[int] = None
        self._measuring = False
        super().__init__(model_path, **kwargs)

    # -- refusing what does not fit -------------------------------------------------

    def check_fits(self, prompt_tokens: int, max_tokens: Optional[int]) -> None:
        """Raise ContextOverflowError unless prompt + max_tokens (<= 0 or None: at least 1) fits."""
        n_ctx = self.n_ctx()
        limited = max_tokens is not None and max_tokens > 0
        if prompt_tokens + (max_tokens if limited else 1) > n_ctx:
            raise ContextOverflowError(prompt_tokens, max_tokens, n_ctx)

    def prompt_tokens(self, create: Callable[..., Any], **kwargs: Any) -> int:
        """The number of tokens of the prompt that ``create(**kwargs)`` would evaluate.

        ``create`` is ``create_completion`` or ``create_chat_completion`` (or
        the same called through llama_cpp.Llama); it runs up to the point where
        generate() receives the formatted, tokenized prompt, and stops there:
        nothing is evaluated and the KV cache is untouched.
        """
        self._measuring = True
        try:
            result = create(**{**kwargs, "stream": True})
            next(iter(result), None)
        except _Measured as m:
            return m.n_tokens
        except ValueError as e:
            too_long = _TOO_LONG.search(str(e))
            if too_long is None:
                raise
            return int(too_long.group(1))
        finally:
            self._measuring = False
        raise RuntimeError("the request did not reach the prompt evaluation")

    def check_request(self, create: Callable[..., Any], **kwargs: Any) -> int:
        """``prompt_tokens``, then ``check_fits`` with the request's max_tokens; returns the count."""
        n = self.prompt_tokens(create, **kwargs)
        self.check_fits(n, kwargs.get("max_tokens"))
        return n

    def _create_completion(self, *args: Any, **kwargs: Any) -> Generator[Any, None, Any]:
        # create_completion passes max_tokens by keyword (-1 for "up to the context").
        self._max_tokens = kwargs.get("max_tokens", args[2] if len(args) > 2 else 16)
        try:
            return (yield from super()._create_completion(*args, **kwargs))
        except ValueError as e:
            too_long = None if isinstance(e, ContextOverflowError) else _TOO_LONG.search(str(e))
            if too_long is None:
                raise
            raise ContextOverflowError(int(too_long.group(1)), self._max_tokens, self.n_ctx()) from None
        finally:
            self._max_tokens = None

    # -- measuring ------------------------------------------------------------------

    def generate(
        self, tokens: Sequence[int], *args: Any, **kwargs: Any
    ) -> Generator[int, Optional[Sequence[int]], None]:
        tokens = list(tokens)
        if self._measuring:
            raise _Measured(len(tokens))
        self.check_fits(len(tokens), self._max_tokens)
        turn = self.last_turn = self._turn = TurnStats(prompt_tokens=len(tokens))
        started = time.perf_counter()
        first_at = started
        inner = super().generate(tokens, *args, **kwargs)
        sent: Optional[Sequence[int]] = None
        try:
            while True:
                try:
                    token = inner.send(sent)
                except StopIteration:
                    return
                if self.interrupt is not None and self.interrupt():
                    return
                now = time.perf_counter()
                if turn.generated_tokens == 0:
                    turn.ttft_s, first_at = now - started, now
                turn.generated_tokens += 1
                turn.decode_s = now - first_at
                sent = yield token
        finally:
            inner.close()
            self._turn = None

    def eval(self, tokens: Sequence[int]) -> None:
        turn = self._turn
        if turn is None or turn.generated_tokens > 0 or turn.prefill_s > 0:
            return super().eval(tokens)
        # The prompt's evaluation: generate() has already dropped the reused prefix.
        turn.reused_tokens, turn.prefill_tokens = self.n_tokens, len(tokens)
        started = time.perf_counter()
        progress, interrupt = self.progress, self.interrupt
        if progress is None and interrupt is None:
            super().eval(tokens)
        else:
            # generate() keeps L at the whole prompt across these calls.
            if progress is not None:
                progress.start(len(tokens))
            for i in range(0, len(tokens), self.n_batch):
                if interrupt is not None and interrupt():
                    raise Interrupted(f"interrupted after {i} of {len(tokens)} prompt tokens")
                chunk = tokens[i : i + self.n_batch]
                super().eval(chunk)
                if progress is not None:
                    progress.advance(len(chunk))
        turn.prefill_s = max(time.perf_counter() - started, 1e-9)
