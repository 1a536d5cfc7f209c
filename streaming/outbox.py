"""Messages waiting to be sent to one client, with partial coalescing.

A client that reads slowly must not grow server memory: a newer partial of an utterance
replaces the unsent older one, so at most one partial per utterance waits. Finals and
errors are never dropped or merged.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class Outbox:
    def __init__(self) -> None:
        self._items: deque[dict[str, Any]] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: dict[str, Any]) -> None:
        if self._closed:
            return
        if message.get("type") == "partial":
            for index, queued in enumerate(self._items):
                if queued.get("type") == "partial" and queued.get("utterance_id") == message.get(
                    "utterance_id"
                ):
                    self._items[index] = message
                    self.coalesced += 1
                    return
        self._items.append(message)
        self._ready.set()

    def close(self) -> None:
        """No more messages; ``get`` returns None once the rest is taken."""
        self._closed = True
        self._ready.set()

    async def get(self) -> dict[str, Any] | None:
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()
