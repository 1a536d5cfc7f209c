"""A small real websockets client for integration tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


async def recv_json(ws: ClientConnection, timeout: float = 30.0) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(message, str)
    data: dict[str, Any] = json.loads(message)
    return data


async def collect_until_close(ws: ClientConnection, timeout: float = 60.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    async def read() -> None:
        async for message in ws:
            out.append(json.loads(message))

    await asyncio.wait_for(read(), timeout)
    return out


async def stream_pcm(
    url: str,
    pcm: bytes,
    *,
    chunk_bytes: int = 3200,
    start: dict[str, Any] | None = None,
    pace: float = 0.0,
) -> tuple[list[dict[str, Any]], int | None]:
    """Send ``pcm`` then ``end``; return every server message and the close code."""
    async with connect(url) as ws:
        ready = await recv_json(ws)
        assert ready["type"] == "ready"
        messages = [ready]
        if start is not None:
            await ws.send(json.dumps({"type": "start", **start}))
        for i in range(0, len(pcm), chunk_bytes):
            await ws.send(pcm[i : i + chunk_bytes])
            await asyncio.sleep(pace)
        await ws.send(json.dumps({"type": "end"}))
        messages += await collect_until_close(ws)
        return messages, ws.close_code


def of_type(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == kind]
