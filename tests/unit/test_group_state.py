"""A group stream's partitions as a state machine (sans-IO, ``_proto/_streams``): whatever order
assignments, revocations, cuts and writes come in, the stream reads exactly the partitions assigned
and not revoked, never writes a batch of a partition it no longer reads, and what it reports as
delivered is, per partition, the end of the last batch written or else where it was placed."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_stream_credit import chunk_of, log

from kafka_ws_trio._proto import CommandFailed, ErrorCode, Grant, PushBatch, Stream, Streams, Subscribe

PARTITIONS = st.integers(0, 5)
#: Records a chunk offers: offsets 0 .. LOG - 1 of every partition.
LOG = 30


class GroupStream(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.stream: Stream = Streams(1 << 20, groups=True).open(
            Subscribe(1, "orders", group="g", credit=Grant(records=1_000_000))
        )
        #: The model: where each partition the stream reads was delivered up to.
        self.delivered: dict[int, int] = {}
        #: Batches cut and not yet written (or dropped), in no particular order.
        self.pending: list[PushBatch] = []

    @rule(partition=PARTITIONS, offset=st.integers(0, LOG))
    def assign(self, partition: int, offset: int) -> None:
        added, left_out = self.stream.assign([(partition, offset)])
        assert left_out is None
        if partition in self.delivered:
            assert added == [], "a partition already read is not placed again"
        else:
            assert added == [(partition, offset)]
            self.delivered[partition] = offset

    @rule(partitions=st.sets(PARTITIONS, max_size=3))
    def revoke(self, partitions: set[int]) -> None:
        returned = dict(self.stream.revoke(partitions))
        assert returned == {p: self.delivered[p] for p in partitions if p in self.delivered}
        for partition in partitions:
            self.delivered.pop(partition, None)

    @rule(partition=PARTITIONS, size=st.integers(1, LOG))
    def cut(self, partition: int, size: int) -> None:
        batch = self.stream.cut(chunk_of(log([b"k"] * LOG), 0, size, partition=partition))
        if batch is not None:
            assert partition in self.delivered, "a partition not read is never cut"
            self.pending.append(batch)

    @precondition(lambda self: self.pending)
    @rule(index=st.integers(0, 100))
    def write(self, index: int) -> None:
        batch = self.pending.pop(index % len(self.pending))
        written = self.stream.confirm(batch)
        assert written == (batch.partition in self.delivered), "written exactly when the partition is still read"
        if written:
            # Batches of one partition are cut in order and each starts where the last ended.
            self.delivered[batch.partition] = batch.next_offset

    @invariant()
    def reads_exactly_what_is_assigned(self) -> None:
        assert sorted(self.stream.partitions) == sorted(self.delivered)
        assert dict(self.stream.delivered()) == self.delivered

    @invariant()
    def a_commit_of_a_partition_not_read_is_refused(self) -> None:
        missing = next(p for p in range(10) if p not in self.delivered)
        with pytest.raises(CommandFailed) as refused:
            self.stream.check_assigned([missing])
        assert refused.value.code == ErrorCode.NOT_ASSIGNED


GroupStream.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_group_stream_state = GroupStream.TestCase
