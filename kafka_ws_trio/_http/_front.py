"""The Trio side of the HTTP front: read a request head from a stream, write a plain response.

Thin on purpose: what the bytes mean is decided in :mod:`._head` and
:mod:`._router`, without I/O.
"""

from __future__ import annotations

from typing import Final

import trio

from ._head import BodyReader, HeadReader, RequestHead, Respond, render

#: Bytes read from a socket at a time.
RECEIVE_BYTES: Final = 64 * 1024


async def read_head(stream: trio.abc.ReceiveStream, reader: HeadReader) -> RequestHead | Respond:
    """Read until ``reader`` has a request head, or the response refusing it.

    Cancellation: the caller bounds the wait (a client may send nothing);
    the bytes read so far stay in ``reader.received``.
    """
    while True:
        data = await stream.receive_some(RECEIVE_BYTES)
        answer = reader.feed(data)
        if answer is not None:
            return answer


async def read_body(stream: trio.abc.ReceiveStream, reader: BodyReader) -> bytes | Respond:
    """Read until ``reader`` has the request's body, or the response refusing it (the caller bounds the wait)."""
    answer = reader.feed(None)
    while answer is None:
        answer = reader.feed(await stream.receive_some(RECEIVE_BYTES))
    return answer


async def send_response(stream: trio.abc.SendStream, response: Respond) -> None:
    """Write ``response``; the caller closes the connection after it."""
    await stream.send_all(render(response))
