from __future__ import annotations

from pathlib import Path

from portask.broker.definitions import CONSUMER_OFFSETS, TOPICS, Definitions


def test_definitions_and_offsets_survive_restart(tmp_path: Path) -> None:
    defs = Definitions(tmp_path).open()
    defs.put(TOPICS, "orders", {"partitions": 3})
    defs.put(CONSUMER_OFFSETS, ("g1", "orders", 2), (17, "meta"))
    defs.close()

    again = Definitions(tmp_path).open()
    assert again.get(TOPICS, "orders") == {"partitions": 3}
    assert again.get(CONSUMER_OFFSETS, ("g1", "orders", 2)) == (17, "meta")
    # Offsets live in their own store so frequent commits never rewrite definitions.
    assert sorted(p.name for p in (tmp_path / "meta").iterdir()) == [
        "definitions.changes", "definitions.snapshot", "offsets.changes", "offsets.snapshot",
    ]
