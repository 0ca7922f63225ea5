"""``portask ctl export-kafka`` and ``import-kafka``: Kafka topics and ACLs out of a
running broker (as the file ``portask serve --topics`` loads, or as the
``kafka-topics.sh``/``kafka-acls.sh`` commands that create them on a real cluster) and
into one (``/_portask/kafka/topology``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portask.testing.control import ControlClient

COMMANDS = ("export-kafka", "import-kafka")


def add_parsers(commands: Any) -> None:
    export = commands.add_parser(
        "export-kafka", help="topics (partitions, configs) and ACLs, as a --topics file or "
        "as kafka-topics.sh/kafka-acls.sh commands")
    export.add_argument("--format", choices=("yaml", "json", "kafka-cli"), default="yaml",
                        help="yaml: the file `portask serve --topics` loads (default); "
                        "kafka-cli: a shell script for a Kafka or Redpanda cluster")
    export.add_argument("--bootstrap-server", default="localhost:9092",
                        help="the cluster the kafka-cli commands talk to")
    export.add_argument("--replication-factor", type=int,
                        help="replication factor of the kafka-cli topics (default: the "
                        "cluster's default.replication.factor)")
    export.add_argument("--output", "-o", type=Path, help="write here instead of stdout")
    load = commands.add_parser("import-kafka", help="create the topics and ACLs of a file "
                               "(as export-kafka writes it) on the running broker")
    load.add_argument("file", type=Path)


def call(client: ControlClient, args: argparse.Namespace) -> Any:
    """The answer to print: text as it is, anything else as JSON."""
    from portask.broker.kafka import topology

    if args.ctl_command == "import-kafka":
        try:
            topology.load_file(args.file)  # refused here with the file's name and line
        except topology.TopologyError as exc:
            # Exit 2, as for a request the broker refuses (the module doc of ctl.py).
            print(f"portask ctl: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        import yaml

        doc = yaml.safe_load(args.file.read_text(encoding="utf-8")) or {}
        return client.call("POST", "kafka/topology", doc)
    doc = client.call("GET", "kafka/topology")
    if args.format == "kafka-cli":
        text = topology.kafka_cli(doc, args.bootstrap_server, args.replication_factor)
    elif args.format == "json":
        text = json.dumps(doc, indent=2) + "\n"
    else:
        import yaml

        text = ("# Kafka topics and ACLs exported from Portask; load with\n"
                "#   portask serve --topics FILE   or   portask ctl import-kafka FILE\n"
                + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    if args.output is None:
        return text
    args.output.write_text(text, encoding="utf-8")
    return {"written": str(args.output), "topics": len(doc["topics"]), "acls": len(doc["acls"])}
