"""The HTTP front: reads the request head with h11 and decides what the connection is for.

* :mod:`._head`: the request head (h11, bounded) and the plain responses, sans-IO;
* :mod:`._router`: path → handler, and admission (503), sans-IO;
* :mod:`._front`: the Trio part, reading from and writing to a stream.

A WebSocket upgrade on a route is handed to trio-websocket together with the
bytes already read; everything else is answered here: 400 (not HTTP, or not
an upgrade on a WebSocket route), 404 (no route), 431 (head too large) and
503 (shutting down, or too many sessions).
"""

from __future__ import annotations

from ._front import RECEIVE_BYTES as RECEIVE_BYTES
from ._front import read_body as read_body
from ._front import read_head as read_head
from ._front import send_response as send_response
from ._gate import Admitted as Admitted
from ._gate import admit_client as admit_client
from ._gate import refuse_no_room as refuse_no_room
from ._head import MAX_REQUEST_HEAD as MAX_REQUEST_HEAD
from ._head import BodyReader as BodyReader
from ._head import HeadReader as HeadReader
from ._head import RequestHead as RequestHead
from ._head import Respond as Respond
from ._head import render as render
from ._router import SHUTTING_DOWN as SHUTTING_DOWN
from ._router import Decision as Decision
from ._router import Handler as Handler
from ._router import HandshakeCount as HandshakeCount
from ._router import Router as Router
from ._router import Upgrade as Upgrade
from ._router import WebSocketEndpoint as WebSocketEndpoint
from ._router import admit as admit
