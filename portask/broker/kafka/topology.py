"""Kafka topics (partitions, configs) and ACLs as a file, and as commands for a real cluster.

The file is what ``portask ctl export-kafka`` writes and ``portask serve --topics FILE``
(``kafka.topics_file``) loads: YAML, one entry per topic with only the configs set on it
(overrides; the broker's defaults are not copied, so a cluster with other defaults keeps
them), and one entry per ACL binding in Kafka's own names::

    topics:
      - name: orders
        partitions: 6
        configs: {cleanup.policy: compact, retention.ms: "86400000"}
    acls:
      - {resource_type: TOPIC, resource_name: orders, pattern_type: LITERAL,
         principal: "User:app", host: "*", operation: WRITE, permission: ALLOW}

The same content as ``kafka-topics.sh --create`` and ``kafka-acls.sh --add`` command lines
is how it moves to a Kafka or Redpanda cluster (``kafka_cli``).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from portask.broker.kafka import topic_configs
from portask.broker.kafka.acls import (
    AclBinding,
    Acls,
    InvalidAcl,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)
from portask.broker.kafka.topics import TopicError, Topics, check_name

_ACL_FIELDS = ("resource_type", "resource_name", "pattern_type", "principal", "host",
               "operation", "permission")
# kafka-acls.sh's option for each resource type, and its spelling of each operation.
_RESOURCE_OPTIONS = {
    ResourceType.TOPIC: "--topic", ResourceType.GROUP: "--group",
    ResourceType.CLUSTER: "--cluster", ResourceType.TRANSACTIONAL_ID: "--transactional-id",
    ResourceType.DELEGATION_TOKEN: "--delegation-token", ResourceType.USER: "--user-principal",
}


class TopologyError(ValueError):
    """The file is refused; the message names the file, the entry, the key and the value."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str]


@dataclass(frozen=True)
class Topology:
    topics: list[TopicSpec]
    acls: list[AclBinding]


@dataclass(frozen=True)
class Applied:
    created: int  # topics created
    changed: int  # existing topics given partitions or other configs
    acls: int  # ACL bindings added


def export(topics: Topics, acls: Iterable[AclBinding]) -> dict[str, Any]:
    """Plain data (for YAML or JSON): every topic with its overrides, every ACL."""
    return {
        "topics": [{"name": t.name, "partitions": len(t.partitions),
                    "configs": dict(sorted(t.configs.items()))}
                   for t in sorted(topics, key=lambda t: t.name)],
        "acls": [{"resource_type": a.resource_type.name, "resource_name": a.resource_name,
                  "pattern_type": a.pattern_type.name, "principal": a.principal,
                  "host": a.host, "operation": a.operation.name,
                  "permission": a.permission.name} for a in acls],
    }


def parse(doc: Any, source: str) -> Topology:
    """Check a loaded document whole, before anything is created."""
    if doc is None:
        return Topology([], [])
    if not isinstance(doc, Mapping):
        raise TopologyError(f"{source}: the top level must be a mapping with topics and acls")
    unknown = sorted(str(k) for k in doc if k not in ("topics", "acls"))
    if unknown:
        raise TopologyError(f"{source}: unknown key {unknown[0]!r} (expected topics, acls)")
    return Topology(_topics(doc.get("topics") or [], source), _acls(doc.get("acls") or [],
                                                                      source))


def _list(value: Any, key: str, source: str) -> list[Any]:
    if not isinstance(value, list):
        raise TopologyError(f"{source}: {key}: expected a list, got {value!r}")
    return value


def _topics(items: Any, source: str) -> list[TopicSpec]:
    out: list[TopicSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(_list(items, "topics", source)):
        where = f"{source}: topics[{i}]"
        if not isinstance(item, Mapping):
            raise TopologyError(f"{where}: expected a mapping with name, partitions, configs")
        extra = sorted(str(k) for k in item if k not in ("name", "partitions", "configs"))
        if extra:
            raise TopologyError(f"{where}: unknown key {extra[0]!r} "
                                "(expected name, partitions, configs)")
        name = item.get("name")
        if not isinstance(name, str):
            raise TopologyError(f"{where}.name: {name!r} is not a topic name")
        try:
            check_name(name)
        except TopicError as exc:
            raise TopologyError(f"{where}.name: {name!r}: {exc}") from None
        if name in seen:
            raise TopologyError(f"{where}.name: topic {name!r} is listed twice")
        seen.add(name)
        partitions = item.get("partitions", 1)
        if isinstance(partitions, bool) or not isinstance(partitions, int) or not (
                1 <= partitions <= 10_000):
            raise TopologyError(f"{where}.partitions: {partitions!r} is not an integer "
                                "between 1 and 10000")
        configs = item.get("configs") or {}
        if not isinstance(configs, Mapping):
            raise TopologyError(f"{where}.configs: expected a mapping, got {configs!r}")
        text = {str(k): _config_text(v) for k, v in configs.items()}
        try:
            checked = topic_configs.validate(text)
        except topic_configs.InvalidTopicConfig as exc:
            raise TopologyError(f"{where}.configs ({name}): {exc}") from None
        out.append(TopicSpec(name, partitions, checked))
    return out


def _config_text(value: Any) -> str | None:
    # YAML reads 86400000 as an int and true as a bool; Kafka configs are strings.
    if isinstance(value, bool):
        return str(value).lower()
    return None if value is None else str(value)


def _acls(items: Any, source: str) -> list[AclBinding]:
    out: list[AclBinding] = []
    for i, item in enumerate(_list(items, "acls", source)):
        where = f"{source}: acls[{i}]"
        if not isinstance(item, Mapping):
            raise TopologyError(f"{where}: expected a mapping with {', '.join(_ACL_FIELDS)}")
        missing = [k for k in _ACL_FIELDS if k not in item]
        extra = sorted(str(k) for k in item if k not in _ACL_FIELDS)
        if missing or extra:
            raise TopologyError(f"{where}: {'missing' if missing else 'unknown'} key "
                                f"{(missing or extra)[0]!r} (expected {', '.join(_ACL_FIELDS)})")
        acl = AclBinding(_enum(ResourceType, item, "resource_type", where),
                         str(item["resource_name"]),
                         _enum(PatternType, item, "pattern_type", where),
                         str(item["principal"]), str(item["host"]),
                         _enum(Operation, item, "operation", where),
                         _enum(Permission, item, "permission", where))
        try:
            acl.validate()
        except InvalidAcl as exc:
            raise TopologyError(f"{where}: {exc}") from None
        out.append(acl)
    return out


def _enum(cls: Any, item: Mapping[str, Any], key: str, where: str) -> Any:
    value = item[key]
    try:
        return cls[str(value).upper()]
    except KeyError:
        names = ", ".join(m.name for m in cls if m.name not in ("UNKNOWN", "ANY"))
        raise TopologyError(f"{where}.{key}: {value!r} is not one of {names}") from None


def apply(topology: Topology, topics: Topics, acls: Acls) -> Applied:
    """Create what is missing; give existing topics the file's partitions and configs.

    Everything is checked first, so a topic that would have to lose partitions (Kafka
    cannot remove them) refuses the whole file and nothing changes.
    """
    for spec in topology.topics:
        topic = topics.get(spec.name)
        if topic is not None and len(topic.partitions) > spec.partitions:
            raise TopologyError(
                f"topic {spec.name!r} has {len(topic.partitions)} partitions and the file "
                f"asks for {spec.partitions}: partitions cannot be removed")
    created = changed = 0
    for spec in topology.topics:
        topic = topics.get(spec.name)
        if topic is None:
            topics.create(spec.name, spec.partitions, spec.configs)
            created += 1
            continue
        grew = len(topic.partitions) < spec.partitions
        reconfigured = topic.configs != spec.configs
        if grew:
            topics.add_partitions(spec.name, spec.partitions)
        if reconfigured:
            topics.alter_configs(spec.name, dict(spec.configs))
        changed += grew or reconfigured
    before = len(acls)
    for acl in topology.acls:
        acls.create(acl)
    return Applied(created, changed, len(acls) - before)


def load_file(path: Path) -> Topology:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read the topics file: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise TopologyError(f"{path}: not valid YAML{where}") from None
    return parse(doc, str(path))


def kafka_cli(doc: Mapping[str, Any], bootstrap: str,
              replication_factor: int | None = None) -> str:
    """A shell script of ``kafka-topics.sh`` and ``kafka-acls.sh`` commands that create the
    exported topics and ACLs on a Kafka (or Redpanda, through the same tools) cluster.
    Without ``replication_factor`` the cluster's default.replication.factor applies."""
    server = shlex.quote(bootstrap)
    lines = ["#!/bin/sh", "# Topics and ACLs exported from Portask (portask ctl export-kafka).",
             "set -e"]
    for topic in doc.get("topics", []):
        parts = ["kafka-topics.sh", "--bootstrap-server", server, "--create", "--if-not-exists",
                 "--topic", shlex.quote(topic["name"]), "--partitions", str(topic["partitions"])]
        if replication_factor is not None:
            parts += ["--replication-factor", str(replication_factor)]
        for name, value in topic.get("configs", {}).items():
            parts += ["--config", shlex.quote(f"{name}={value}")]
        lines.append(" ".join(parts))
    for acl in doc.get("acls", []):
        allow = acl["permission"] == "ALLOW"
        resource = ResourceType[acl["resource_type"]]
        parts = ["kafka-acls.sh", "--bootstrap-server", server, "--add",
                 "--allow-principal" if allow else "--deny-principal",
                 shlex.quote(acl["principal"]),
                 "--allow-host" if allow else "--deny-host", shlex.quote(acl["host"]),
                 "--operation", _operation_option(acl["operation"]),
                 _RESOURCE_OPTIONS[resource]]
        if resource != ResourceType.CLUSTER:
            parts.append(shlex.quote(acl["resource_name"]))
        parts += ["--resource-pattern-type", acl["pattern_type"].lower()]
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def _operation_option(name: str) -> str:
    """READ -> Read, DESCRIBE_CONFIGS -> DescribeConfigs: kafka-acls.sh's spelling."""
    return "".join(word.capitalize() for word in name.split("_"))
