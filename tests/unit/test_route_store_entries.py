"""The route store's records (issue 14): what a value holds, and that secrets stay out of the topic."""

from __future__ import annotations

import pytest

from kafka_ws_trio._config import ConfigError
from kafka_ws_trio._kafka._route_store import decode_entry, encode_entry
from kafka_ws_trio._server import _refuse_secret_values


def test_a_store_entry_is_a_route_table_or_a_deletion_and_never_holds_a_secret_value() -> None:
    table = {"nodes": ["h:1"], "sasl": {"username": "u", "password_env": "KAFKA_PASSWORD"}}
    assert decode_entry(encode_entry(table)) == (True, table)
    assert decode_entry(encode_entry(None)) == (True, None)
    assert decode_entry(None) == (False, None)  # a tombstone: the file's route shows again
    with pytest.raises(ValueError, match="neither"):
        decode_entry(b'{"routes": {}}')
    _refuse_secret_values(table)  # an *_env key is fine
    with pytest.raises(ConfigError) as refused:
        _refuse_secret_values({"nodes": ["h:1"], "sasl": {"username": "u", "password": "hunter2"}})
    assert refused.value.key == "sasl.password" and "hunter2" not in str(refused.value)
