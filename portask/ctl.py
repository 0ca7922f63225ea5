"""``portask ctl``: the control API (``/_portask/``) from a shell, for tests in any
language and for a person at a terminal. Answers are printed as JSON.

Exit codes: 0 done; 1 a wait timed out (the state last seen is printed); 2 the broker
refused the request or could not be reached (the reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
from typing import TYPE_CHECKING, Any

from portask import ctl_kafka

if TYPE_CHECKING:
    from portask.testing.control import ControlClient

DEFAULT_URL = "http://127.0.0.1:8080"


def add_parser(sub: Any) -> None:
    ctl = sub.add_parser("ctl", help="reset, peek, wait and inject faults on a running broker")
    ctl.add_argument("--url", default=os.environ.get("PORTASK_URL", DEFAULT_URL),
                     help=f"the broker's HTTP listener (default $PORTASK_URL or {DEFAULT_URL})")
    ctl.add_argument("--user", default=os.environ.get("PORTASK_USER", "guest"))
    ctl.add_argument("--password", default=os.environ.get("PORTASK_PASSWORD", "guest"))
    commands = ctl.add_subparsers(dest="ctl_command", required=True)

    reset = commands.add_parser("reset", help="delete topics, groups, queues, exchanges")
    reset.add_argument("--vhost", help="only this AMQP vhost (Kafka untouched)")
    reset.add_argument("--prefix", help="only names starting with this")

    peek = commands.add_parser("peek", help="records of a topic partition or messages of a "
                               "queue (--queue), not consumed")
    peek.add_argument("topic", nargs="?")
    peek.add_argument("partition", type=int, nargs="?", default=0)
    peek.add_argument("--offset", type=int, default=0)
    peek.add_argument("--count", type=int, default=10)
    peek.add_argument("--queue", help="peek this AMQP queue instead of a topic")
    peek.add_argument("--vhost", default="/")
    peek.add_argument("--routing-key", help="only messages whose routing key matches this "
                      "shell-style pattern")
    peek.add_argument("--header", action="append", default=[],
                      help="NAME:VALUE (or NAME: present) a message's headers must have")
    peek.add_argument("--body", help="only messages whose body contains this text")

    seed = commands.add_parser("seed", help="declare a topology from a YAML or JSON file")
    seed.add_argument("file", help="the topology ('-' reads stdin)")
    snapshot = commands.add_parser("snapshot", help="take a named snapshot")
    snapshot.add_argument("name")
    restore = commands.add_parser("restore", help="reset and restore a named snapshot")
    restore.add_argument("name")
    commands.add_parser("snapshots", help="list the snapshots")
    vhost = commands.add_parser("vhost", help="create or delete an AMQP vhost")
    vhost.add_argument("change", choices=("create", "delete"))
    vhost.add_argument("name")

    wait = commands.add_parser("wait", help="until a queue, topic or group is as asked")
    kinds = wait.add_subparsers(dest="wait_kind", required=True)
    queue = kinds.add_parser("queue")
    queue.add_argument("queue")
    queue.add_argument("--vhost", default="/")
    queue.add_argument("--messages", type=int)
    queue.add_argument("--consumers", type=int)
    topic = kinds.add_parser("topic")
    topic.add_argument("topic")
    topic.add_argument("--records", type=int, default=1)
    group = kinds.add_parser("group")
    group.add_argument("group")
    group.add_argument("--state", default="Stable")
    group.add_argument("--members", type=int)
    for parser in (queue, topic, group):
        parser.add_argument("--timeout-ms", type=int, default=5000)

    faults = commands.add_parser("faults", help="add, list or clear fault rules")
    actions = faults.add_subparsers(dest="faults_command", required=True)
    add = actions.add_parser("add")
    add.add_argument("--protocol", default="kafka")
    add.add_argument("--api", help="Kafka API name: Produce, Fetch, Metadata, ...")
    add.add_argument("--min-version", type=int, help="lowest API version it applies to")
    add.add_argument("--max-version", type=int, help="highest API version it applies to")
    add.add_argument("--topic")
    add.add_argument("--partition", type=int, help="with --topic: requests naming it")
    add.add_argument("--action", required=True,
                     choices=("error", "delay", "drop", "close", "throttle", "nack"))
    add.add_argument("--error", help="Kafka error name, e.g. NOT_LEADER_OR_FOLLOWER")
    add.add_argument("--delay-ms", type=int, default=0)
    add.add_argument("--throttle-ms", type=int, help="Kafka throttle_time_ms to answer with")
    add.add_argument("--times", type=int)
    add.add_argument("--probability", type=float)
    add.add_argument("--duration-ms", type=int, help="the rule ends after this long")
    add.add_argument("--client", help="Kafka client id or AMQP connection_name it matches")
    add.add_argument("--match-user", help="authenticated user it matches")
    add.add_argument("--method", help="AMQP method, e.g. basic.publish")
    add.add_argument("--queue")
    add.add_argument("--exchange")
    add.add_argument("--routing-key", help="AMQP routing key a nack rule matches")
    add.add_argument("--code", type=int, help="AMQP reply code of the close")
    add.add_argument("--text", help="AMQP reply text of the close")
    actions.add_parser("list")
    actions.add_parser("clear")

    requests = commands.add_parser("requests", help="the request log")
    log_actions = requests.add_subparsers(dest="requests_command", required=True)
    listing = log_actions.add_parser("list")
    for name in ("protocol", "api", "topic", "client-id", "connection", "queue", "exchange"):
        listing.add_argument(f"--{name}")
    listing.add_argument("--errors", action="store_true", help="only answers with errors")
    listing.add_argument("--since-ms", type=int, help="only from this Unix time in ms on")
    listing.add_argument("--limit", type=int)
    on = log_actions.add_parser("on")
    on.add_argument("--size", type=int)
    log_actions.add_parser("off")
    log_actions.add_parser("clear")

    alarm = commands.add_parser("alarm", help="raise or clear the memory or disk alarm")
    alarm.add_argument("change", choices=("raise", "clear"))
    alarm.add_argument("resource", choices=("memory", "disk"))

    commands.add_parser("close-connections", help="close every client connection")
    ctl_kafka.add_parsers(commands)

    syncs = commands.add_parser("fail-syncs", help="make the next N fsyncs of the logs fail")
    syncs.add_argument("count", type=int, help="how many (0: none)")

    refuse = commands.add_parser("refuse", help="reset new connections to a listener")
    refuse.add_argument("listener", choices=("kafka", "amqp"))
    refuse.add_argument("--duration-ms", type=int, required=True,
                        help="how long; 0 accepts connections again")
    refuse.add_argument("--close-existing", action="store_true",
                        help="close the open connections too (the broker is down)")


def run(args: argparse.Namespace) -> int:
    # Imported here: `portask serve` builds the same parser and should not load a client.
    from portask.testing.control import ControlClient, ControlError, WaitTimeout

    client = ControlClient(args.url, args.user, args.password)
    try:
        answer = _call(client, args)
    except WaitTimeout as timeout:
        print(json.dumps(timeout.answer))
        return 1
    except ControlError as err:
        print(f"portask ctl: {err}", file=sys.stderr)
        return 2
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        print(f"portask ctl: cannot reach {args.url}: {reason}", file=sys.stderr)
        return 2
    if isinstance(answer, str):
        sys.stdout.write(answer)
    else:
        print(json.dumps(answer, indent=2))
    return 0


def _call(client: ControlClient, args: argparse.Namespace) -> Any:
    command = args.ctl_command
    if command in ctl_kafka.COMMANDS:
        return ctl_kafka.call(client, args)
    if command == "reset":
        return client.reset(vhost=args.vhost, prefix=args.prefix)
    if command == "peek":
        return _peek(client, args)
    if command in ("seed", "snapshot", "restore", "snapshots", "vhost"):
        return _state(client, args)
    if command == "wait":
        return _wait(client, args)
    if command == "faults":
        if args.faults_command == "add":
            return client.add_fault(protocol=args.protocol, action=args.action, api=args.api,
                                    topic=args.topic, error=args.error,
                                    delay_ms=args.delay_ms, times=args.times,
                                    probability=args.probability, method=args.method,
                                    queue=args.queue, exchange=args.exchange,
                                    code=args.code, text=args.text,
                                    min_version=args.min_version,
                                    max_version=args.max_version,
                                    throttle_ms=args.throttle_ms,
                                    routing_key=args.routing_key, client=args.client,
                                    user=args.match_user, duration_ms=args.duration_ms,
                                    partition=args.partition)
        if args.faults_command == "list":
            return client.faults()
        return {"cleared": client.clear_faults()}
    if command == "requests":
        if args.requests_command == "list":
            return client.requests(protocol=args.protocol, api=args.api, topic=args.topic,
                                   client_id=args.client_id, limit=args.limit,
                                   connection=args.connection, queue=args.queue,
                                   exchange=args.exchange, errors=args.errors,
                                   since_ms=args.since_ms)
        if args.requests_command in ("on", "off"):
            client.record_requests(args.requests_command == "on",
                                   getattr(args, "size", None))
            return {"enabled": args.requests_command == "on"}
        return {"cleared": client.clear_requests()}
    return _broker_call(client, args)


def _broker_call(client: ControlClient, args: argparse.Namespace) -> Any:
    command = args.ctl_command
    if command == "alarm":
        if args.change == "raise":
            return {"alarms": client.raise_alarm(args.resource)}
        return {"alarms": client.clear_alarm(args.resource)}
    if command == "fail-syncs":
        return {"failing_syncs": client.fail_syncs(args.count)}
    if command == "refuse":
        if not args.duration_ms:
            client.accept_connections(args.listener)
            return {"closed": 0}
        return {"closed": client.refuse_connections(args.listener, args.duration_ms,
                                                    close_existing=args.close_existing)}
    return {"closed": client.close_connections()}


def _peek(client: ControlClient, args: argparse.Namespace) -> Any:
    if args.queue:
        headers: dict[str, str | None] = {}
        for header in args.header:
            name, sep, value = header.partition(":")
            headers[name] = value if sep else None
        return client.peek_queue(args.queue, vhost=args.vhost, offset=args.offset,
                                 limit=args.count, routing_key=args.routing_key,
                                 headers=headers, body=args.body)
    if not args.topic:
        from portask.testing.control import ControlError

        raise ControlError(400, "give a topic, or --queue NAME")
    return client.peek_topic(args.topic, args.partition, offset=args.offset,
                             count=args.count)


def _state(client: ControlClient, args: argparse.Namespace) -> Any:
    command = args.ctl_command
    if command == "seed":
        from pathlib import Path

        return client.seed(sys.stdin.read() if args.file == "-" else Path(args.file))
    if command == "snapshot":
        return client.snapshot(args.name)
    if command == "restore":
        return client.restore(args.name)
    if command == "snapshots":
        return client.snapshots()
    if args.change == "create":
        return {"vhost": args.name, "created": client.create_vhost(args.name)}
    client.delete_vhost(args.name)
    return {"deleted": args.name}


def _wait(client: ControlClient, args: argparse.Namespace) -> Any:
    if args.wait_kind == "queue":
        return client.wait_queue(args.queue, vhost=args.vhost, messages=args.messages,
                                 consumers=args.consumers, timeout_ms=args.timeout_ms)
    if args.wait_kind == "topic":
        return client.wait_topic(args.topic, records=args.records,
                                 timeout_ms=args.timeout_ms)
    return client.wait_group(args.group, state=args.state or None, members=args.members,
                             timeout_ms=args.timeout_ms)
