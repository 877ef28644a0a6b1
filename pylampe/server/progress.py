"""The served model's prompt evaluation, as the chat page sees it: how far it has got (polled
by the page for its progress bar), and the page's Stop.

A ``PrefillMeter`` is attached to each model that answers a request: it is the model's
``MeteredLlama.progress`` (``start`` and ``advance`` are called from the worker thread that
evaluates the prompt, n_batch tokens at a time; the event loop reads ``snapshot()``) and its
``interrupt``, so that a Stop ends a long document's read between two of those batches, or an
answer at its next token, without waiting for either.

Stops are addressed: each request on the model ``begin``s with the id the page sent
(``X-Pylampe-Request``), and ``stop(id)`` only stops the request with that id, so a page
never stops another client's request.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Optional

from ..metered import MeteredLlama

# The header the chat page names its requests with (see static/api.js).
REQUEST_ID_HEADER = "X-Pylampe-Request"


class PrefillMeter:
    """The prompt evaluation in progress on the served model, and the request it belongs to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._request: Optional[str] = None
        self._stop = False
        self._total = 0
        self._done = 0
        self._started = 0.0
        self._active = False

    def attach(self, llm: MeteredLlama) -> None:
        """Follow ``llm``'s prompt evaluations and let the page stop them."""
        llm.progress = self
        llm.interrupt = self.stop_requested

    def begin(self, request_id: Optional[str]) -> None:
        """A request got the model; ``request_id`` is what may stop it (None: nothing can)."""
        with self._lock:
            self._request, self._stop, self._active = request_id, False, False

    def stop(self, request_id: str) -> bool:
        """Ask the request ``request_id`` to stop; False when it is not the one on the model."""
        with self._lock:
            if self._request is None or self._request != request_id:
                return False
            self._stop = True
            self._active = False
            return True

    def stop_requested(self) -> bool:
        return self._stop

    # -- MeteredLlama's Progress ------------------------------------------------------

    def start(self, total: int) -> None:
        with self._lock:
            self._total, self._done, self._started, self._active = total, 0, time.monotonic(), True

    def advance(self, n: int) -> None:
        with self._lock:
            self._done += n
            self._active = self._done < self._total

    # -- what the page polls ----------------------------------------------------------

    def snapshot(self) -> Dict[str, Any]:
        """``active`` while a prompt is being evaluated, with tokens ``done`` of ``total`` and the rate."""
        with self._lock:
            seconds = time.monotonic() - self._started if self._started else 0.0
            return {
                "active": self._active, "done": self._done, "total": self._total,
                "seconds": round(seconds, 3), "rate": round(self._done / seconds, 1) if seconds > 0 else 0.0,
            }
