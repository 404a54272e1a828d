"""CmdAuth, a fresh credential in the middle of a session (schema/README.md, "Refreshing a token"), sans-IO."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import (
    Auth,
    AuthAction,
    ErrorCode,
    Reply,
    ServerConnection,
    decode_request,
    decode_response,
    encode_auth_request,
)
from kafka_ws_trio._proto._events import ErrorAnswer

MAX_MESSAGE_SIZE = 1 << 20


@given(sequence=st.integers(-(2**63), 2**63 - 1), token=st.text(min_size=1, max_size=300))
def test_a_cmd_auth_decodes_to_its_token_which_no_repr_shows(sequence: int, token: str) -> None:
    request = decode_request(encode_auth_request(sequence, token))
    assert request == Auth(sequence=sequence, token=token)
    assert repr(request) == f"Auth(sequence={sequence})"


def test_an_empty_token_is_an_invalid_request() -> None:
    connection = ServerConnection(MAX_MESSAGE_SIZE, reauth=True)
    reply = connection.receive(encode_auth_request(4, ""))
    assert isinstance(reply, Reply)
    answer = decode_response(reply.frame)
    assert isinstance(answer, ErrorAnswer)
    assert (answer.sequence, answer.code, answer.message) == (4, ErrorCode.INVALID_REQUEST, "invalid auth: empty token")


def test_a_session_that_takes_credentials_hands_cmd_auth_to_the_session() -> None:
    action = ServerConnection(MAX_MESSAGE_SIZE, reauth=True).receive(encode_auth_request(9, "t0ken"))
    assert action == AuthAction(Auth(sequence=9, token="t0ken"))


def test_a_session_that_takes_none_answers_unknown_command_even_to_an_empty_token() -> None:
    connection = ServerConnection(MAX_MESSAGE_SIZE)
    for frame in (encode_auth_request(9, "t0ken"), encode_auth_request(10, "")):
        reply = connection.receive(frame)
        assert isinstance(reply, Reply)
        answer = decode_response(reply.frame)
        assert isinstance(answer, ErrorAnswer)
        assert answer.code == ErrorCode.UNKNOWN_COMMAND


def test_the_field_is_43_and_its_token_1() -> None:
    frame = pb.PubSubReq(sequence=1, cmd_auth=pb.CmdAuth(token="ab")).SerializeToString()
    assert frame.hex() == "0801da02040a026162"
    assert frame == encode_auth_request(1, "ab")
