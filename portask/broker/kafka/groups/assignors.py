"""The server-side assignors of the consumer group protocol (KIP-848): ``uniform`` and
``range``, as Kafka 4.0 names them (group.consumer.assignors).

An assignor is a pure function from the members' subscriptions, the subscribed topics'
partition counts and the current target assignment to the next target assignment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

# member id -> topic -> partitions
Assignment = dict[str, frozenset[int]]
Subscriptions = Mapping[str, frozenset[str]]  # member id -> subscribed (existing) topics
Assignor = Callable[[Subscriptions, Mapping[str, int], Mapping[str, Assignment]],
                    dict[str, Assignment]]


def uniform(
    subscriptions: Subscriptions,
    partitions: Mapping[str, int],
    current: Mapping[str, Assignment],
) -> dict[str, Assignment]:
    """Balanced and sticky: every member gets floor(N/M) or one more partition of the
    topics it subscribes to (exactly so when every member subscribes to the same topics;
    as close as the subscriptions allow otherwise), keeping what it held when it can, so
    an incremental rebalance moves as few partitions as possible (Kafka's
    UniformAssignor has the same goals)."""
    members = sorted(subscriptions)
    result: dict[str, dict[str, set[int]]] = {m: {} for m in members}
    if not members:
        return {}
    every = [(t, p) for t in sorted(partitions) for p in range(partitions[t])
             if any(t in subscriptions[m] for m in members)]
    floor, extra = divmod(len(every), len(members))
    counts = dict.fromkeys(members, 0)
    taken: set[tuple[str, int]] = set()

    def give(member: str, tp: tuple[str, int]) -> None:
        result[member].setdefault(tp[0], set()).add(tp[1])
        counts[member] += 1
        taken.add(tp)

    # Keep up to the floor quota of what each member held, then let members that held
    # more keep one more while the quota of members at floor + 1 is not used up.
    kept_over: list[tuple[str, tuple[str, int]]] = []
    for m in members:
        held = sorted((t, p) for t, ps in current.get(m, {}).items() for p in ps
                      if t in subscriptions[m] and p < partitions.get(t, 0))
        for tp in held:
            if tp in taken:
                continue
            if counts[m] < floor:
                give(m, tp)
            else:
                kept_over.append((m, tp))
    for m, tp in kept_over:
        if extra and counts[m] == floor and tp not in taken:
            give(m, tp)
            extra -= 1
    # The rest goes to the eligible member with the fewest partitions.
    for tp in every:
        if tp in taken:
            continue
        eligible = [m for m in members if tp[0] in subscriptions[m]]
        give(min(eligible, key=lambda m: (counts[m], m)), tp)
    return {m: {t: frozenset(ps) for t, ps in a.items()} for m, a in result.items()}


def range_(
    subscriptions: Subscriptions,
    partitions: Mapping[str, int],
    current: Mapping[str, Assignment],
) -> dict[str, Assignment]:
    """Per topic, contiguous ranges of partitions to its subscribers in member id order,
    the first ``N % M`` subscribers taking one more (the classic range assignor's split,
    so co-partitioned topics land on the same member)."""
    del current  # range is not sticky
    result: dict[str, Assignment] = {m: {} for m in subscriptions}
    for topic in sorted(partitions):
        subscribers = sorted(m for m, topics in subscriptions.items() if topic in topics)
        if not subscribers:
            continue
        share, extra = divmod(partitions[topic], len(subscribers))
        start = 0
        for i, m in enumerate(subscribers):
            size = share + (1 if i < extra else 0)
            if size:
                result[m][topic] = frozenset(range(start, start + size))
            start += size
    return result


ASSIGNORS: dict[str, Assignor] = {"uniform": uniform, "range": range_}
