"""Portask load generator: ``loadtest.py amqp ...``, ``loadtest.py kafka ...`` or
``loadtest.py onelog ...`` (Kafka topics read and written over AMQP).

It drives brokers through real client-side wire code only (never Portask's own
modules), so the same command measures Portask and a real RabbitMQ or Kafka.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="loadtest.py", description=__doc__)
    parser.add_argument("protocol", choices=("amqp", "kafka", "onelog"))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    protocol, rest = argv[0], argv[1:]
    parser.parse_args([protocol])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    module_name = f"loadtest_{protocol}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"loadtest: the {protocol} load test is not available in this checkout "
              f"(tools/{module_name}.py is missing)", file=sys.stderr)
        return 2
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
