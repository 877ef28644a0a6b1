"""Prefill meter: times the prompt evaluation and optionally draws a bar on stderr."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


class PrefillProgress:
    """Counts evaluated prompt tokens; draws ``done/total, tok/s, ETA`` when ``show``."""

    def __init__(self, show: bool, stream: TextIO = sys.stderr, width: int = 30, min_total: int = 0):
        self.show = show
        # prefills shorter than this are not drawn (a chat turn's few tokens)
        self.min_total = min_total
        self.stream = stream
        self.width = width
        self.total = 0
        self.done = 0
        self.started: Optional[float] = None
        self.finished: Optional[float] = None

    def start(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.perf_counter()
        self.finished = None
        self._draw()

    def advance(self, n: int) -> None:
        self.done += n
        self._draw()
        if self.done >= self.total:
            self.finished = time.perf_counter()
            if self.drawn:
                self.stream.write("\n")
                self.stream.flush()

    def end(self) -> None:
        """Close the line of a bar whose prefill stopped before its end (an error, Ctrl-C)."""
        if self.started is None or self.finished is not None:
            return
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
        self.started = None

    @property
    def seconds(self) -> float:
        """Wall time of the prefill so far (or in all, once finished)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.perf_counter()) - self.started

    @property
    def rate(self) -> float:
        """Prompt tokens per second."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def drawn(self) -> bool:
        """Whether the bar of the current prefill is on the screen."""
        return self.show and self.total > 0 and self.total >= self.min_total

    def _draw(self) -> None:
        if not self.drawn:
            return
        filled = self.width * self.done // self.total
        bar = "#" * filled + "-" * (self.width - filled)
        rate = self.rate
        eta = _duration((self.total - self.done) / rate) if rate > 0 else "?"
        self.stream.write(
            f"\rprefill [{bar}] {self.done}/{self.total} tokens, {rate:.0f} tok/s, ETA {eta} "
        )
        self.stream.flush()
