"""The schema is the wire contract: field numbers as schema/README.md ("Field numbers") lists them, and the
committed generated code is what scripts/gen-proto makes of schema/pubsub.proto today."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from kafka_ws_trio._pb import pubsub_pb2 as pb

REPO = Path(__file__).resolve().parents[2]
GENERATED = ("kafka_ws_trio/_pb/pubsub_pb2.py", "kafka_ws_trio/_pb/pubsub_pb2.pyi")

# schema/README.md, "Field numbers": APISIX's numbers, with our additions to KafkaMessage and
# the new KafkaHeader. "(req)" and "(resp)" name the oneof a field belongs to.
EXPECTED_FIELDS = {
    "CmdPing": ["1 bytes state"],
    "CmdEmpty": [],
    "CmdKafkaListOffset": ["1 string topic", "2 int32 partition", "3 int64 timestamp"],
    "CmdKafkaFetch": ["1 string topic", "2 int32 partition", "3 int64 offset"],
    "PubSubReq": [
        "1 int64 sequence",
        "31 CmdEmpty cmd_empty (req)",
        "32 CmdPing cmd_ping (req)",
        "33 CmdKafkaFetch cmd_kafka_fetch (req)",
        "34 CmdKafkaListOffset cmd_kafka_list_offset (req)",
        "35 CmdSubscribe cmd_subscribe (req)",
        "36 CmdCredit cmd_credit (req)",
        "37 CmdUnsubscribe cmd_unsubscribe (req)",
        "38 CmdSeek cmd_seek (req)",
        "39 CmdCommit cmd_commit (req)",
        "40 CmdProduce cmd_produce (req)",
        "41 CmdTxn cmd_txn (req)",
        "42 CmdGroupOffsets cmd_group_offsets (req)",
        "43 CmdAuth cmd_auth (req)",
    ],
    "ErrorResp": ["1 int32 code", "2 string message"],
    "PongResp": ["1 bytes state"],
    "KafkaHeader": ["1 string key", "2 optional bytes value"],
    "KafkaMessage": [
        "1 int64 offset",
        "2 int64 timestamp",
        "3 optional bytes key",
        "4 optional bytes value",
        "5 repeated KafkaHeader headers",
    ],
    "KafkaFetchResp": ["1 repeated KafkaMessage messages"],
    "KafkaListOffsetResp": ["1 int64 offset"],
    "PubSubResp": [
        "1 int64 sequence",
        "31 ErrorResp error_resp (resp)",
        "32 PongResp pong_resp (resp)",
        "33 KafkaFetchResp kafka_fetch_resp (resp)",
        "34 KafkaListOffsetResp kafka_list_offset_resp (resp)",
        "35 SubscribeResp subscribe_resp (resp)",
        "36 StreamBatch stream_batch (resp)",
        "37 StreamEvent stream_event (resp)",
        "38 OkResp ok_resp (resp)",
        "39 ProduceResp produce_resp (resp)",
        "40 GroupOffsetsResp group_offsets_resp (resp)",
    ],
    # Streams (schema/README.md, "Streams"): the extension's numbers.
    "PartitionOffset": ["1 int32 partition", "2 int64 offset"],
    "OffsetList": ["1 repeated PartitionOffset entries"],
    "Credit": ["1 int64 records", "2 int64 bytes"],
    "HeaderMatch": ["1 string key", "2 optional bytes value"],
    "Filter": ["1 repeated bytes key_equals", "2 optional bytes key_prefix", "3 repeated HeaderMatch headers"],
    "CmdSubscribe": [
        "1 string topic",
        "2 repeated int32 partitions",
        "3 StartEdge edge (start)",
        "4 int64 timestamp (start)",
        "5 OffsetList offsets (start)",
        "6 Filter filter",
        "7 Credit credit",
        "8 Isolation isolation",
        "9 string group",
        "10 bool auto_commit",
    ],
    "CmdCredit": ["1 int64 subscription", "2 Credit credit"],
    "CmdUnsubscribe": ["1 int64 subscription"],
    "CmdSeek": [
        "1 int64 subscription",
        "2 int32 partition",
        "3 StartEdge edge (to)",
        "4 int64 timestamp (to)",
        "5 int64 offset (to)",
    ],
    "CmdCommit": ["1 int64 subscription", "2 OffsetList offsets"],
    "OkResp": [],
    "ProduceRecord": [
        "1 optional int32 partition",
        "2 optional bytes key",
        "3 optional bytes value",
        "4 repeated KafkaHeader headers",
        "5 int64 timestamp",
    ],
    "CmdProduce": ["1 string topic", "2 repeated ProduceRecord records", "3 Acks acks", "4 bool transactional"],
    "CmdTxn": ["1 TxnAction action"],
    "ProduceResult": ["1 int32 partition", "2 int64 offset", "3 int64 timestamp", "4 ErrorResp error"],
    "ProduceResp": ["1 repeated ProduceResult results"],
    # Reading a group's committed offsets (schema/README.md, "Consumer groups"): past PROTOCOL.md's numbers.
    "CmdGroupOffsets": ["1 string group", "2 string topic"],
    "CmdAuth": ["1 string token"],
    "GroupOffsetsResp": ["1 OffsetList committed"],
    "SubscribeResp": ["1 OffsetList positions"],
    "StreamBatch": [
        "1 int32 partition",
        "2 repeated KafkaMessage messages",
        "3 int64 next_offset",
        "4 int64 high_watermark",
    ],
    "PartitionsChanged": [
        "1 repeated int32 assigned",
        "2 repeated int32 revoked",
        "3 repeated PartitionOffset positions",
    ],
    "StreamEvent": [
        "1 int32 caught_up (event)",
        "2 ErrorResp error (event)",
        "3 PartitionsChanged partitions (event)",
        "4 ErrorResp ended (event)",
        "5 optional int32 partition",
    ],
}

EXPECTED_ENUMS = {
    "StartEdge": {"LATEST": 0, "EARLIEST": 1},
    "Isolation": {"READ_UNCOMMITTED": 0, "READ_COMMITTED": 1},
    "Acks": {"ACKS_ROUTE_DEFAULT": 0, "ACKS_NONE": 1, "ACKS_LEADER": 2, "ACKS_ALL": 3},
    "TxnAction": {"TXN_ACTION_UNSPECIFIED": 0, "TXN_BEGIN": 1, "TXN_COMMIT": 2, "TXN_ABORT": 3},
}


def describe_fields(message: descriptor_pb2.DescriptorProto) -> list[str]:
    """Render each field the way EXPECTED_FIELDS spells it."""
    described = []
    for field in message.field:
        if field.type in (field.TYPE_MESSAGE, field.TYPE_ENUM):
            type_name = field.type_name.rsplit(".", 1)[-1]
        else:
            type_name = descriptor_pb2.FieldDescriptorProto.Type.Name(field.type).removeprefix("TYPE_").lower()
        text = f"{field.number} "
        if field.label == field.LABEL_REPEATED:
            text += "repeated "
        if field.proto3_optional:
            text += "optional "
        text += f"{type_name} {field.name}"
        if field.HasField("oneof_index") and not field.proto3_optional:
            text += f" ({message.oneof_decl[field.oneof_index].name})"
        described.append(text)
    return described


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    return proto


def test_field_numbers_match_protocol() -> None:
    proto = file_descriptor()
    assert proto.syntax == "proto3"
    assert proto.package == "kafka_ws_trio.pubsub"
    assert {message.name: describe_fields(message) for message in proto.message_type} == EXPECTED_FIELDS


def test_enum_numbers_match_protocol() -> None:
    enums = {enum.name: {value.name: value.number for value in enum.value} for enum in file_descriptor().enum_type}
    assert enums == EXPECTED_ENUMS


def test_schema_is_registered_under_a_private_name() -> None:
    # Protobuf's default pool is global: APISIX's "pubsub.proto" must be able to sit beside ours.
    assert pb.DESCRIPTOR.name == "kafka_ws_trio/_pb/pubsub.proto"
    assert pb.PubSubReq.DESCRIPTOR.full_name == "kafka_ws_trio.pubsub.PubSubReq"


# schema/README.md, ListOffset and Fetch: two encodings that must decode to exactly these values.
@pytest.mark.parametrize(
    ("hex_frame", "sequence", "command", "fields"),
    [
        (
            "08068a02110a0d746573742d636f6e73756d6572180e",
            6,
            "cmd_kafka_fetch",
            {"topic": "test-consumer", "partition": 0, "offset": 14},
        ),
        (
            "080192021a0a0d746573742d636f6e73756d657218feffffffffffffffff01",
            1,
            "cmd_kafka_list_offset",
            {"topic": "test-consumer", "partition": 0, "timestamp": -2},
        ),
    ],
)
def test_protocol_examples_decode(hex_frame: str, sequence: int, command: str, fields: dict[str, object]) -> None:
    frame = bytes.fromhex(hex_frame)
    request = pb.PubSubReq.FromString(frame)
    assert request.sequence == sequence
    assert request.WhichOneof("req") == command
    decoded = getattr(request, command)
    assert {name: getattr(decoded, name) for name in fields} == fields
    assert request.SerializeToString() == frame


def gen_proto_pin() -> str:
    for line in (REPO / "scripts/requirements-gen.txt").read_text().splitlines():
        if line.startswith("grpcio-tools=="):
            return line.removeprefix("grpcio-tools==")
    raise AssertionError("scripts/requirements-gen.txt does not pin grpcio-tools")


def test_test_extra_pins_the_generator() -> None:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    requirements = [line.replace(" ", "") for line in config["options.extras_require"]["test"].split("\n")]
    assert f"grpcio-tools=={gen_proto_pin()}" in requirements


def installed_grpcio_tools() -> str | None:
    try:
        return importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        return None


def regenerate(out: Path) -> Path:
    """Run scripts/gen-proto with this interpreter's grpc_tools; return where the files went."""
    if importlib.util.find_spec("grpc_tools") is None:  # in the test extra: missing, it is a failure
        pytest.fail("grpcio-tools is not installed (it is in the test extra: pip install -e '.[test]')")
    subprocess.run(
        [str(REPO / "scripts/gen-proto"), "--out", str(out), "--python", sys.executable],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    installed = installed_grpcio_tools()
    if installed != gen_proto_pin():
        pytest.skip(
            f"the generator is pinned to grpcio-tools {gen_proto_pin()}, this environment has {installed}; "
            "test_generated_descriptor_is_fresh still checks the schema"
        )
    out = regenerate(tmp_path)
    for name in GENERATED:
        assert (out / name).read_bytes() == (REPO / name).read_bytes(), f"{name} is stale: run scripts/gen-proto"


def test_generated_descriptor_is_fresh(tmp_path: Path) -> None:
    # Any protoc version serializes the same schema the same way, so this runs everywhere.
    out = regenerate(tmp_path)
    fresh = embedded_descriptor(out / GENERATED[0])
    assert embedded_descriptor(REPO / GENERATED[0]) == fresh, "schema/pubsub.proto changed: run scripts/gen-proto"


def embedded_descriptor(path: Path) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto that a generated _pb2.py hands to AddSerializedFile."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "AddSerializedFile":
            argument = node.args[0]
            assert isinstance(argument, ast.Constant)
            assert isinstance(argument.value, bytes)
            return descriptor_pb2.FileDescriptorProto.FromString(argument.value)
    raise AssertionError(f"no AddSerializedFile call in {path}")
