"""Messages waiting to be sent to one client, where a newer snapshot replaces an unsent one.

A client that reads slowly must not grow server memory. Messages that describe a state as a
whole (a native partial of one utterance, a WhisperLive segment list, a Deepgram interim
result) are queued with a key: a newer message with the same key replaces the unsent older
one in its place, so at most one per key waits. Messages without a key (finals, errors) are
never dropped or merged.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Any

Message = dict[str, Any]


class Outbox:
    def __init__(self) -> None:
        self._items: deque[tuple[Hashable | None, Message]] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        self.replaced = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: Message, key: Hashable | None = None) -> None:
        """Queue ``message``; with a ``key``, replace the unsent message with that key."""
        if self._closed:
            return
        if key is not None:
            for index, (queued_key, _) in enumerate(self._items):
                if queued_key == key:
                    self._items[index] = (key, message)
                    self.replaced += 1
                    return
        self._items.append((key, message))
        self._ready.set()

    def close(self) -> None:
        """No more messages; ``get`` returns None once the rest is taken."""
        self._closed = True
        self._ready.set()

    async def get(self) -> Message | None:
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()[1]
