"""MemoryBuffer on its own: bounds, batches by bytes, marks and close."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uptake import MemoryBuffer


def never(reason: str, count: int, oldest: int) -> None:
    raise AssertionError("a memory buffer never drops on its own")


@pytest.fixture
def buffer() -> MemoryBuffer:
    made = MemoryBuffer()
    made.configure(max_events=5, max_bytes=100, on_drop=never, lease=60)
    return made


def test_put_refuses_past_the_event_bound(buffer: MemoryBuffer) -> None:
    assert all(buffer.put(b"x") for _ in range(5))
    assert not buffer.put(b"x")
    assert len(buffer) == 5


def test_put_refuses_past_the_byte_bound(buffer: MemoryBuffer) -> None:
    assert buffer.put(b"a" * 60)
    assert not buffer.put(b"b" * 41)
    assert buffer.put(b"c" * 40)
    assert buffer.nbytes == 100


def test_take_fills_a_batch_by_bytes_counting_the_commas(buffer: MemoryBuffer) -> None:
    for n in range(4):
        buffer.put(b"%d" % n * 9)  # 9 bytes, 10 with the comma
    batch = buffer.take(20)
    assert batch is not None and list(batch.messages) == [b"0" * 9, b"1" * 9]
    assert (batch.low, batch.high) == (1, 2)
    assert len(buffer) == 4  # taken but not settled: still counted


def test_an_event_larger_than_the_batch_still_goes_alone(buffer: MemoryBuffer) -> None:
    buffer.put(b"z" * 50)
    batch = buffer.take(10)
    assert batch is not None and len(batch) == 1


def test_marks_tell_when_earlier_events_are_settled(buffer: MemoryBuffer) -> None:
    buffer.put(b"a")
    mark = buffer.mark()
    buffer.put(b"b")
    assert not buffer.drained(mark)
    batch = buffer.take(1000)
    assert batch is not None
    buffer.settle(batch)
    assert buffer.drained(mark) and buffer.drained(buffer.mark())
    assert len(buffer) == 0 and buffer.take(1000) is None


def test_close_drops_and_counts_what_waits(buffer: MemoryBuffer) -> None:
    buffer.put(b"a")
    buffer.put(b"b")
    assert buffer.close() == 2
    assert len(buffer) == 0 and buffer.drained(buffer.mark())


def test_a_forked_child_starts_empty(buffer: MemoryBuffer) -> None:
    buffer.put(b"a")
    buffer.after_fork_in_child()
    assert len(buffer) == 0 and buffer.mark() == 0


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=300),
    max_bytes=st.integers(min_value=1, max_value=3_000),
)
def test_take_returns_the_longest_prefix_that_fits_in_order(
    sizes: list[int], max_bytes: int
) -> None:
    buffer = MemoryBuffer()
    buffer.configure(max_events=10_000, max_bytes=10**9, on_drop=never, lease=60)
    events = [b"%d:" % i + b"x" * size for i, size in enumerate(sizes)]
    for event in events:
        assert buffer.put(event)
    taken: list[bytes] = []
    while (batch := buffer.take(max_bytes)) is not None:
        messages = list(batch.messages)
        cost = sum(len(m) + 1 for m in messages)
        # within the limit, or a single event larger than it; and nothing more would fit
        assert cost <= max_bytes or len(messages) == 1
        rest = events[len(taken) + len(messages) :]
        assert not rest or cost + len(rest[0]) + 1 > max_bytes
        taken += messages
        assert buffer.nbytes == sum(map(len, rest))
    assert taken == events


def test_a_budget_below_zero_still_takes_one_event(buffer: MemoryBuffer) -> None:
    buffer.put(b"a" * 10)
    buffer.put(b"b" * 10)
    batch = buffer.take(-14)  # (a max_batch_bytes under the envelope's size)
    assert batch is not None and list(batch.messages) == [b"a" * 10]
