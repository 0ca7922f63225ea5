"""Unacked deliveries kept as runs of tags: every way of settling gives what a dict of
tag -> (queue, ref, consumer) would give, in tag order (checked against one, at random)."""

from __future__ import annotations

import random

import pytest

from portask.protocols.amqp.unacked import Unacked


def _groups_as_entries(groups: list[tuple[object, object, list[object]]]
                       ) -> list[tuple[object, object, object]]:
    return [(queue, ref, consumer) for queue, consumer, refs in groups for ref in refs]


@pytest.mark.parametrize("seed", range(40))
def test_runs_settle_as_a_dict_of_tags_would(seed: int) -> None:
    rng = random.Random(seed)
    queues, consumers = ["q1", "q2"], ["c1", "c2", None]
    runs, model = Unacked(), {}
    tag = 0
    for _ in range(400):
        action = rng.random()
        if action < 0.5:  # deliveries: one, or a batch from one queue to one consumer
            queue, consumer = rng.choice(queues), rng.choice(consumers)
            count = rng.choice([1, 1, 3, 70])
            refs = [f"m{tag + i + 1}" for i in range(count)]
            if count == 1:
                runs.add(tag + 1, queue, refs[0], consumer)
            else:
                runs.add_many(tag + 1, queue, consumer, list(refs))
            for ref in refs:
                tag += 1
                model[tag] = (queue, ref, consumer)
        elif action < 0.75 and tag:  # single acks or nacks, maybe of settled tags
            # Sometimes a burst over the last deliveries, out of order, leaving some:
            # what makes a long run mostly settled behind held deliveries.
            burst = rng.choice([1, 1, 1, 60])
            for target in rng.sample(range(max(tag - 80, 1), tag + 1),
                                     min(burst, tag)) if burst > 1 else [rng.randint(1, tag)]:
                assert (target in runs) == (target in model)
                group = runs.take_one(target)
                entry = model.pop(target, None)
                assert (group is None) == (entry is None)
                if group is not None:
                    assert _groups_as_entries([group]) == [entry]
        elif action < 0.97 and tag:  # a multiple-ack through some tag
            target = rng.randint(1, tag + 2)
            taken = [t for t in model if t <= target]
            assert _groups_as_entries(runs.take_through(target)) == [
                model.pop(t) for t in taken]
        else:
            assert _groups_as_entries(runs.take_all()) == list(model.values())
            model.clear()
        assert len(runs) == len(model)
    assert _groups_as_entries(runs.take_all()) == list(model.values())
    assert len(runs) == 0


def test_a_long_run_settled_from_the_front_does_not_keep_what_it_handed_out() -> None:
    runs = Unacked()
    for tag in range(1, 100_001):
        runs.add(tag, "q", tag, "c")
        if tag % 10 == 0 and tag > 200:  # 200 in flight, acked ten at a time
            taken = runs.take_through(tag - 200)
            assert taken == [("q", "c", list(range(tag - 209, tag - 199)))]
    run = runs._runs[0]
    assert len(runs._runs) == 1 and len(run.refs) < 1000


def test_a_long_run_acked_one_at_a_time_does_not_keep_what_was_acked() -> None:
    runs = Unacked()
    for tag in range(1, 100_001):
        runs.add(tag, "q", tag, "c")
        if tag > 10:  # 10 in flight, each acked on its own, in order
            assert runs.take_one(tag - 10) == ("q", "c", [tag - 10])
    assert len(runs) == 10 and len(runs._runs[0].refs) < 1000



def test_a_run_behind_a_held_delivery_does_not_keep_what_was_acked() -> None:
    """One delivery held (a slow or stuck job), every later one acked on its own."""
    runs = Unacked()
    runs.add(1, "q", 1, "c")
    for tag in range(2, 200_002):
        runs.add(tag, "q", tag, "c")
        assert runs.take_one(tag) == ("q", "c", [tag])
    assert len(runs) == 1 and sum(len(run.refs) for run in runs._runs) < 1000
    assert runs.take_all() == [("q", "c", [1])]
