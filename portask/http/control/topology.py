"""``/_portask/kafka/topology``: Kafka topics (partitions, configs) and ACLs, exported
as ``portask ctl export-kafka`` writes them and loaded as ``portask serve --topics``
loads them (``broker/kafka/topology.py`` holds the format).

- ``GET``: ``{"topics": [...], "acls": [...]}``.
- ``POST`` the same document: missing topics and ACLs are created, existing topics get
  its partitions and configs; ``{"created": N, "changed": N, "acls": N}``. A document
  with any bad entry is refused whole (400, the entry, key and value named).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portask.http.control.view import ControlView, TopologyError
from portask.http.kafka.api import Call, invalid

if TYPE_CHECKING:
    from portask.http.management.api import Router


def register(router: Router, view: ControlView) -> None:
    def export(call: Call) -> Any:
        return view.kafka_topology()

    def load(call: Call) -> Any:
        try:
            applied = view.load_kafka_topology(call.body())
        except TopologyError as exc:
            raise invalid("body", str(exc)) from None
        return {"created": applied.created, "changed": applied.changed, "acls": applied.acls}

    router.add("GET", "kafka/topology", export)
    router.add("POST", "kafka/topology", load)
