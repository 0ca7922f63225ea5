"""Generate portask/protocols/kafka/old_schemas/: the request and response versions
Kafka 3.7 serves that kio (which follows Kafka 4, KIP-896) no longer carries.

Usage:
    python tools/gen_kafka_old_schemas.py KAFKA_GIT_DIR [TAG]   # TAG defaults to 3.7.0

It reads Kafka's own message definitions (clients/src/main/resources/common/message/
*.json at TAG) and writes one module per (API, version), in kio's style: frozen
dataclasses whose fields carry ``kafka_type`` metadata, so kio's reader, writer and
Portask's bounds check work on them unchanged. A field that kio's oldest version of the
same API also has is copied from kio (its name, type and default), so handlers see the
same attribute names at every version; a field only old versions have (e.g.
OffsetCommit v1's per-partition commit timestamp) is named in snake case from Kafka's
name. Run it again after changing APIS below; the output is committed.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from kio.index import load_payload_module
from kio.schema.index import api_key_map, schema_name_map
from kio.static.constants import EntityType

# The APIs whose old versions Portask serves: Kafka's message name -> versions to write.
APIS: dict[str, tuple[int, ...]] = {
    "Produce": (0, 1, 2),
    "Fetch": (0, 1, 2, 3),
    "ListOffsets": (0,),
    "OffsetCommit": (0, 1),
    "OffsetFetch": (0,),
    "CreateTopics": (0, 1),
    "DeleteTopics": (0,),
    "DescribeConfigs": (0,),
    "OffsetForLeaderEpoch": (0, 1),
    "DescribeLogDirs": (0,),
    "AlterReplicaLogDirs": (0,),
    "DescribeAcls": (0,),
    "CreateAcls": (0,),
    "DeleteAcls": (0,),
}

MESSAGES = "clients/src/main/resources/common/message"
OUT = Path(__file__).resolve().parent.parent / "portask" / "protocols" / "kafka" / "old_schemas"

_PRIMITIVES = {
    "bool": ("bool", None),
    "int8": ("i8", "kio.static.primitive"),
    "int16": ("i16", "kio.static.primitive"),
    "uint16": ("u16", "kio.static.primitive"),
    "int32": ("i32", "kio.static.primitive"),
    "int64": ("i64", "kio.static.primitive"),
    "float64": ("f64", "kio.static.primitive"),
    "string": ("str", None),
    "bytes": ("bytes", None),
    "records": ("Records", "kio.static.primitive"),
    "uuid": ("UUID", "uuid"),
}


def _versions(spec: str | None, version: int) -> bool:
    if spec is None or spec == "none":
        return False
    if spec.endswith("+"):
        return version >= int(spec[:-1])
    if "-" in spec:
        low, high = spec.split("-")
        return int(low) <= version <= int(high)
    return version == int(spec)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _load(git_dir: str, tag: str, name: str) -> dict[str, Any]:
    text = subprocess.run(
        ["git", "-C", git_dir, "show", f"{tag}:{MESSAGES}/{name}.json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))


class _Module:
    def __init__(self, api_key: int, version: int) -> None:
        self.api_key = api_key
        self.version = version
        self.imports: set[tuple[str, str]] = {
            ("dataclasses", "dataclass"),
            ("dataclasses", "field"),
            ("typing", "ClassVar"),
            ("kio.static.constants", "EntityType"),
            ("kio.static.primitive", "i16"),
        }
        self.classes: list[str] = []
        self.names: set[str] = set()

    def use(self, obj: Any) -> str:
        """Import what a copied kio annotation or default refers to."""
        module = getattr(obj, "__module__", None)
        name = getattr(obj, "__name__", None)
        if module and name and module != "builtins":
            self.imports.add((module, name))
        return name or repr(obj)


def _annotation(mod: _Module, annotation: Any) -> str:
    """Source text for a kio field annotation, importing the names it uses."""
    text = repr(annotation) if not isinstance(annotation, type) else annotation.__name__
    for match in set(re.findall(r"[A-Za-z_][\w.]*", text)):
        if "." in match:
            module, _, name = match.rpartition(".")
            if module in ("builtins", "typing"):
                text = text.replace(match, name)
                continue
            mod.imports.add((module, name))
            text = text.replace(match, name)
    if isinstance(annotation, type) and annotation.__module__ != "builtins":
        mod.imports.add((annotation.__module__, annotation.__name__))
    return text.replace("NoneType", "None")


def _default_source(mod: _Module, field: dataclasses.Field[Any]) -> str | None:
    if field.default is dataclasses.MISSING:
        return None
    value = field.default
    kafka_type = field.metadata.get("kafka_type")
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, datetime.timedelta):
        cls = "i32Timedelta" if kafka_type == "timedelta_i32" else "i64Timedelta"
        mod.imports.add(("kio.static.primitive", cls))
        mod.imports.add(("datetime", "timedelta"))
        ms = int(value.total_seconds() * 1000)
        return f"{cls}.parse(timedelta(milliseconds={ms}))"
    if hasattr(type(value), "__members__"):
        kind = type(value)
        mod.imports.add((kind.__module__, kind.__name__))
        return f"{kind.__name__}.{value.name}"
    if isinstance(value, int) and kafka_type in _PRIMITIVES:
        py, module = _PRIMITIVES[kafka_type]
        if module:
            mod.imports.add((module, py))
        return f"{py}({int(value)})"
    if isinstance(value, (int, str, bytes, float)):
        return repr(value)
    if isinstance(value, tuple) and not value:
        return "()"
    raise ValueError(f"cannot write default {value!r} of {field.name}")


def _nested_dataclass(annotation: Any) -> type | None:
    """The struct a kio field annotation holds (``tuple[X, ...]``, ``X | None``), if any."""
    for arg in (annotation, *getattr(annotation, "__args__", ())):
        if dataclasses.is_dataclass(arg):
            return arg  # type: ignore[return-value]
        for sub in getattr(arg, "__args__", ()):
            if dataclasses.is_dataclass(sub):
                return sub  # type: ignore[no-any-return]
    return None


def _new_field(
    mod: _Module, f: dict[str, Any], element: str | None, nullable: bool
) -> tuple[str, str, dict[str, str], str | None]:
    """Name, annotation, metadata and default of a field kio's versions do not have."""
    base = element or f["type"]
    py, module = _PRIMITIVES[base]
    if module:
        mod.imports.add((module, py))
    annotation = f"tuple[{py}, ...]" if element else py
    if nullable:
        annotation += " | None"
    default = None
    if "default" in f and not element:
        raw = f["default"]
        if raw == "null":
            default = "None"
        elif base in ("int8", "int16", "int32", "int64", "uint16"):
            default = f"{py}({int(raw, 0) if isinstance(raw, str) else raw})"
        elif base == "bool":
            default = "True" if str(raw).lower() == "true" else "False"
        elif base == "string":
            default = repr(raw)
    return _snake(f["name"]), annotation, {"kafka_type": base}, default


def _struct(
    mod: _Module,
    class_name: str,
    fields: list[dict[str, Any]],
    kio_type: type | None,
    kio_version: int,
    entity: str,
    header: str,
) -> None:
    present = [f for f in fields if _versions(f.get("versions"), mod.version)]
    kio_fields: dict[str, dataclasses.Field[Any]] = {}
    if kio_type is not None:
        at_kio = [f for f in fields if _versions(f.get("versions"), kio_version)]
        kio_list = dataclasses.fields(kio_type)  # type: ignore[arg-type]
        if len(at_kio) != len(kio_list):
            raise SystemExit(
                f"{class_name}: Kafka has {len(at_kio)} fields at v{kio_version}, "
                f"kio {len(kio_list)}"
            )
        kio_fields = {f["name"]: k for f, k in zip(at_kio, kio_list, strict=True)}
    lines: list[str] = []
    for f in present:
        if f.get("taggedVersions"):
            raise SystemExit(f"{class_name}.{f['name']}: tagged field in a non-flexible version")
        kafka_type: str = f["type"]
        element = kafka_type[2:] if kafka_type.startswith("[]") else None
        copied = kio_fields.get(f["name"])
        nested_kio = _nested_dataclass(copied.type) if copied is not None else None
        nullable = _versions(f.get("nullableVersions"), mod.version)
        if "fields" in f:
            nested_name = element or kafka_type
            _struct(mod, nested_name, f["fields"], nested_kio, kio_version, "nested", header)
            annotation = f"tuple[{nested_name}, ...]" if element else nested_name
            if nullable:
                annotation += " | None"
            name = copied.name if copied is not None else _snake(f["name"])
            lines.append(f"    {name}: {annotation}")
            continue
        if copied is not None:
            annotation = _annotation(mod, copied.type)
            metadata = dict(copied.metadata)
            default = _default_source(mod, copied)
            name = copied.name
        else:
            name, annotation, metadata, default = _new_field(mod, f, element, nullable)
        if metadata:
            meta = "{" + ", ".join(f"{k!r}: {v!r}" for k, v in metadata.items()) + "}"
            args = f"metadata={meta}" + (f", default={default}" if default is not None else "")
            lines.append(f"    {name}: {annotation} = field({args})")
        else:
            tail = f" = {default}" if default is not None else ""
            lines.append(f"    {name}: {annotation}{tail}")
    if class_name in mod.names:
        raise SystemExit(f"{class_name} defined twice in one module")
    mod.names.add(class_name)
    mod.imports.add((f"kio.schema.{header}", header.split(".")[-1].title().replace("_", "")))
    header_class = "RequestHeader" if "request" in header else "ResponseHeader"
    body = [
        "@dataclass(frozen=True, slots=True, kw_only=True)",
        f"class {class_name}:",
        f"    __type__: ClassVar = EntityType.{entity}",
        f"    __version__: ClassVar[i16] = i16({mod.version})",
        "    __flexible__: ClassVar[bool] = False",
        f"    __api_key__: ClassVar[i16] = i16({mod.api_key})",
        f"    __header_schema__: ClassVar[type[{header_class}]] = {header_class}",
        *lines,
    ]
    mod.classes.append("\n".join(body))


def _message(mod: _Module, spec: dict[str, Any], kind: EntityType, git_name: str) -> None:
    kio_name = api_key_map[spec["apiKey"]]
    kio_version = min(schema_name_map[kio_name])
    kio_module = load_payload_module(spec["apiKey"], kio_version, kind)  # type: ignore[arg-type]
    kio_type = next(
        v for v in vars(kio_module).values() if getattr(v, "__type__", None) == kind
    )
    if _versions(spec.get("flexibleVersions"), mod.version):
        raise SystemExit(f"{git_name} v{mod.version} is flexible; only old versions are written")
    header = (
        "request_header.v1.header" if kind == EntityType.request else "response_header.v0.header"
    )
    _struct(mod, spec["name"], spec["fields"], kio_type, kio_version, kind.name, header)


def main() -> None:
    git_dir = sys.argv[1]
    tag = sys.argv[2] if len(sys.argv) > 2 else "3.7.0"
    OUT.mkdir(exist_ok=True)
    written = []
    for name, versions in APIS.items():
        request = _load(git_dir, tag, f"{name}Request")
        response = _load(git_dir, tag, f"{name}Response")
        for version in versions:
            mod = _Module(request["apiKey"], version)
            _message(mod, request, EntityType.request, f"{name}Request")
            _message(mod, response, EntityType.response, f"{name}Response")
            imports = sorted(mod.imports)
            imports = [(m, n) for m, n in imports if not m.startswith("kio.schema.re")]
            header_import = [
                "from kio.schema.request_header.v1.header import RequestHeader",
                "from kio.schema.response_header.v0.header import ResponseHeader",
            ]
            source = "\n".join(
                [
                    f'"""{name} v{version}: generated by tools/gen_kafka_old_schemas.py from '
                    f"Kafka {tag}'s",
                    f"{name}Request.json and {name}Response.json. "
                    "Do not edit; run the tool again.",
                    '"""',
                    "",
                    "# ruff: noqa",
                    *[f"from {m} import {n}" for m, n in imports if m not in ("builtins",)],
                    *header_import,
                    "",
                    "",
                    "\n\n\n".join(mod.classes),
                    "",
                ]
            )
            module_name = f"{api_key_map[request['apiKey']]}_v{version}"
            (OUT / f"{module_name}.py").write_text(source)
            written.append(module_name)
    (OUT / "__init__.py").write_text(
        '"""Kafka 3.7 request and response versions kio does not carry, one module per\n'
        "(API, version), named ``<kio schema name>_v<version>``; generated by\n"
        'tools/gen_kafka_old_schemas.py. registry.schema() falls back to them."""\n'
    )
    print("\n".join(written))


if __name__ == "__main__":
    main()
