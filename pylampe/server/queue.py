"""One request at a time on the served model, first come first served."""

from __future__ import annotations

from typing import Optional

import anyio

from .proxy import LampeProxy


class ModelQueue:
    """One request at a time on the model, first come first served.

    A semaphore, not a lock: a streaming answer acquires it in its route and
    releases it when the stream ends, in another task.
    """

    def __init__(self, proxy: LampeProxy):
        self.proxy = proxy
        self._semaphore: Optional[anyio.Semaphore] = None  # made in the event loop

    def waiting(self) -> bool:
        """Whether a request waits for the model."""
        return self._semaphore is not None and self._semaphore.statistics().tasks_waiting > 0

    async def acquire(self) -> "Lease":
        if self._semaphore is None:
            self._semaphore = anyio.Semaphore(1)
        await self._semaphore.acquire()
        return Lease(self._semaphore)


class Lease:
    def __init__(self, semaphore: anyio.Semaphore):
        self._semaphore: Optional[anyio.Semaphore] = semaphore

    async def release(self) -> None:
        """Idempotent: the stream's end and the response's background task both call it."""
        if self._semaphore is not None:
            self._semaphore, semaphore = None, self._semaphore
            semaphore.release()
