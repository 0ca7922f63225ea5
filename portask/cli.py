"""``portask serve | check-config | ctl | version``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from portask import __version__
from portask.config import ConfigError, Settings, environment_warnings, load_settings, to_yaml

# Flags that are shorthands for a setting: flag dest -> "section.key".
_SHORTHANDS = {
    "host": "server.host",
    "data_dir": "server.data_dir",
    "kafka_port": "kafka.port",
    "amqp_port": "amqp.port",
    "http_port": "http.port",
    "log_level": "server.log_level",
    "topics": "kafka.topics_file",
    "definitions": "amqp.load_definitions",
}


def _parser(with_ctl: bool = True) -> argparse.ArgumentParser:
    """``with_ctl=False`` leaves out ``ctl``'s thirty sub-commands, which a broker that
    is starting (``portask serve``) never parses: ~10 ms of its start-up."""
    parser = argparse.ArgumentParser(
        prog="portask", description="A Kafka and AMQP 0-9-1 broker on one segment log."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the broker")
    serve.add_argument("--config", type=Path, help="YAML settings file (see configs/)")
    serve.add_argument("--host", help="address to listen on (server.host)")
    serve.add_argument("--data-dir", help="where data is kept (server.data_dir)")
    serve.add_argument("--kafka-port", help="Kafka listener port (kafka.port)")
    serve.add_argument("--amqp-port", help="AMQP listener port (amqp.port)")
    serve.add_argument("--http-port", help="HTTP listener port (http.port)")
    serve.add_argument("--log-level", help="debug, info, warning or error (server.log_level)")
    serve.add_argument("--topics", help="YAML file of Kafka topics and ACLs to create, as "
                       "`portask ctl export-kafka` writes it (kafka.topics_file)")
    serve.add_argument("--definitions", metavar="FILE",
                       help="import a RabbitMQ definitions JSON file at start-up "
                       "(amqp.load_definitions)")
    serve.add_argument(
        "--dev-tls", action="store_true",
        help="serve TLS too, with a self-signed CA and certificates created in the data "
        "dir (tls.dev)",
    )
    serve.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="set any setting, e.g. --set storage.flush_ms=200 (repeatable)",
    )

    check = sub.add_parser("check-config", help="validate a settings file and print the result")
    check.add_argument("file", type=Path)

    sub.add_parser("version", help="print the version")
    if with_ctl:
        from portask import ctl

        ctl.add_parser(sub)
    return parser


def _overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        pairs.append((key.strip(), value))
    if args.dev_tls:
        pairs.append(("tls.dev", True))
    for dest, dotted in _SHORTHANDS.items():
        value = getattr(args, dest)
        if value is not None:
            pairs.append((dotted, value))
    return pairs


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = _parser(with_ctl=argv[:1] != ["serve"]).parse_args(argv)
    if args.command == "version":
        print(f"portask {__version__}")
        return 0
    if args.command == "ctl":
        from portask import ctl

        return ctl.run(args)
    try:
        if args.command == "check-config":
            settings = load_settings(args.file, environ={})
            sys.stdout.write(f"# {args.file}: ok\n{to_yaml(settings)}")
            return 0
        settings = load_settings(args.config, overrides=_overrides(args))
    except ConfigError as exc:
        print(f"portask: config error: {exc}", file=sys.stderr)
        return 2
    return _serve(settings)


def _serve(settings: Settings) -> int:
    from portask import logs
    from portask.listeners import ListenerError, bind_all

    logs.configure(settings.server.log_level, settings.server.log_format)
    for line in environment_warnings():
        logging.getLogger("portask.config").warning(line)
    tls_context = None
    if settings.tls.enabled:
        from portask import tls

        try:
            tls_context = tls.server_context(settings)
        except tls.TlsError as exc:
            print(f"portask: error: {exc}", file=sys.stderr)
            return 1
        if settings.tls.dev:
            files = tls.DevFiles(*(Path(settings.server.data_dir).resolve() / tls.DEV_DIR / n
                                   for n in tls.DEV_FILE_NAMES))
            print(f"portask: dev TLS: CA certificate {files.ca_cert} (clients trust it); "
                  f"client certificate {files.client_cert}, key {files.client_key}",
                  flush=True)
    # Bind before importing the rest: ports accept connections (queued by the kernel)
    # from here on, and a busy port is reported before anything else happens.
    try:
        listeners = bind_all(settings, tls_context)
    except ListenerError as exc:
        print(f"portask: error: {exc}", file=sys.stderr)
        return 1
    # kio's phantom types import hypothesis when it is installed, as it is where tests
    # run, to register test strategies: 160 ms of a 0.5 s start that the broker never
    # uses. Marked absent in this process only (the broker's own process).
    if "hypothesis" not in sys.modules:
        sys.modules["hypothesis"] = None  # type: ignore[assignment]
    from portask import app

    try:
        return app.run(settings, listeners)
    except KeyboardInterrupt:
        return 130
