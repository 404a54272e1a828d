"""The in-flight budget of produce commands (records and bytes, first come first served), without I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafka_ws_trio._proto import Amount, Budget, Claim


def test_what_fits_is_taken_at_once_and_what_does_not_waits_until_given_back() -> None:
    budget = Budget(Amount(10, 100), "produce_session")
    granted: list[str] = []
    assert budget.ask(Amount(6, 50), lambda: granted.append("a")) is None
    claim = budget.ask(Amount(5, 10), lambda: granted.append("b"))
    assert isinstance(claim, Claim)
    assert granted == []
    budget.give(Amount(6, 50))
    assert granted == ["b"]
    assert (budget.records, budget.bytes) == (5, 10)


def test_a_small_claim_never_overtakes_a_large_one() -> None:
    budget = Budget(Amount(10, 1000), "produce_route")
    granted: list[str] = []
    budget.ask(Amount(8, 0), lambda: None)
    budget.ask(Amount(9, 0), lambda: granted.append("large"))
    # Two records would fit now, but the large claim came first.
    assert budget.ask(Amount(2, 0), lambda: granted.append("small")) is not None
    budget.give(Amount(8, 0))
    assert granted == ["large"]
    budget.give(Amount(9, 0))
    assert granted == ["large", "small"]


def test_a_withdrawn_claim_lets_the_next_one_through() -> None:
    budget = Budget(Amount(10, 1000), "produce_route")
    granted: list[str] = []
    budget.ask(Amount(5, 0), lambda: None)
    first = budget.ask(Amount(9, 0), lambda: granted.append("first"))
    budget.ask(Amount(4, 0), lambda: granted.append("second"))
    assert first is not None
    budget.withdraw(first)
    assert granted == ["second"]


def test_too_large_names_the_bound_to_raise() -> None:
    budget = Budget(Amount(10, 100), "produce_session")
    assert budget.too_large(Amount(11, 1)) == "11 records, more than produce_session_records (10) allows in flight"
    assert budget.too_large(Amount(1, 101)) == "101 bytes, more than produce_session_bytes (100) allows in flight"
    assert budget.too_large(Amount(10, 100)) is None
    with pytest.raises(ValueError, match="can never hand out"):
        budget.ask(Amount(11, 0), lambda: None)


AMOUNTS = st.builds(Amount, st.integers(0, 10), st.integers(0, 100))


@given(st.lists(st.tuples(st.sampled_from(["ask", "give", "withdraw"]), AMOUNTS, st.integers(0, 50)), max_size=60))
def test_the_budget_is_never_exceeded_and_grants_in_order(steps: list[tuple[str, Amount, int]]) -> None:
    budget = Budget(Amount(10, 100), "produce_route")
    held: list[Amount] = []
    waiting: list[tuple[int, Claim]] = []
    granted: list[int] = []
    asked = 0
    for action, amount, pick in steps:
        if action == "ask":
            number = asked
            asked += 1

            def grant(number: int = number, amount: Amount = amount) -> None:
                granted.append(number)
                held.append(amount)

            claim = budget.ask(amount, grant)
            if claim is None:
                held.append(amount)
            else:
                waiting.append((number, claim))
        elif action == "give" and held:
            budget.give(held.pop(pick % len(held)))
        elif action == "withdraw" and waiting:
            number, claim = waiting.pop(pick % len(waiting))
            if number not in granted:
                budget.withdraw(claim)
        assert budget.records == sum(a.records for a in held) <= 10
        assert budget.bytes == sum(a.bytes for a in held) <= 100
    assert granted == sorted(granted)
