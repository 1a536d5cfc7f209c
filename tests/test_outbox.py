"""The one outbox: keyed snapshots replace unsent ones in place; nothing else is dropped."""

from __future__ import annotations

import asyncio

from streaming.outbox import Outbox


async def test_outbox_replaces_only_unsent_messages_with_the_same_key() -> None:
    box = Outbox()
    box.put({"n": 1}, "a")
    box.put({"n": 2})
    box.put({"n": 3}, "a")
    box.put({"n": 4}, "b")
    assert await box.get() == {"n": 3}
    box.put({"n": 5}, "a")
    box.close()
    box.put({"n": 6})
    got = [await box.get() for _ in range(4)]
    assert got == [{"n": 2}, {"n": 4}, {"n": 5}, None]
    assert box.replaced == 1
    waiter = asyncio.ensure_future(Outbox().get())
    await asyncio.sleep(0)
    assert not waiter.done()
    waiter.cancel()


async def test_a_newer_partial_takes_the_place_of_the_unsent_one_of_its_utterance() -> None:
    box = Outbox()
    box.put({"type": "partial", "utterance_id": 0, "text": "he"}, ("partial", 0))
    box.put({"type": "final", "utterance_id": 0, "text": "hello"})
    box.put({"type": "partial", "utterance_id": 1, "text": "wo"}, ("partial", 1))
    box.put({"type": "partial", "utterance_id": 0, "text": "hel"}, ("partial", 0))
    box.put({"type": "partial", "utterance_id": 1, "text": "wor"}, ("partial", 1))
    assert len(box) == 3
    texts = [(await box.get() or {})["text"] for _ in range(3)]
    assert texts == ["hel", "hello", "wor"]


async def test_get_waits_for_a_message_and_returns_none_once_closed_and_empty() -> None:
    box = Outbox()
    waiter = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    box.put({"n": 1})
    assert await waiter == {"n": 1}
    closing = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    box.close()
    assert await closing is None
