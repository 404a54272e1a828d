"""Which failures of a connection the server takes as the client going away, and which it logs as errors."""

from __future__ import annotations

import sys

import trio
from trio_websocket import ConnectionClosed

from kafka_ws_trio._server import client_went_away

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


def closed() -> ConnectionClosed:
    return ConnectionClosed(None)


def test_a_closed_or_broken_connection_is_the_client_going_away() -> None:
    assert client_went_away(closed())
    assert client_went_away(trio.BrokenResourceError())
    assert client_went_away(trio.ClosedResourceError())


def test_a_nursery_s_group_of_them_is_too_however_deep() -> None:
    """trio wraps a task's exception in an ExceptionGroup: the server must look inside."""
    assert client_went_away(ExceptionGroup("session", [closed(), trio.BrokenResourceError()]))
    assert client_went_away(ExceptionGroup("outer", [ExceptionGroup("inner", [closed()])]))


def test_anything_else_alone_or_in_a_group_is_an_error() -> None:
    assert not client_went_away(ValueError("a bug"))
    assert not client_went_away(ExceptionGroup("session", [closed(), KeyError("a bug")]))
