"""The import structure the tree promises: modules depend one way, layers point down.

The graph is read from the source with ``ast``, so it sees every import: at module
level, inside functions, and under ``if TYPE_CHECKING:``. An import that only a type
checker runs still says one module needs the other; hiding a loop that way is not
breaking it.

``from package import submodule`` counts as an import of the submodule only, when it is
one (the graph knows): Python runs the package's ``__init__`` first either way, and a
package whose ``__init__`` lists its submodules is not a loop with them.

No module of ``portask`` is in an import cycle with another; LAYERS says what each
package may not import.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AMQP = ROOT / "portask" / "protocols" / "amqp"
KAFKA = ROOT / "portask" / "protocols" / "kafka"

PORTASK = ROOT / "portask"

# Each package imports nothing from the packages listed against it: protocols -> broker
# -> storage, never upward. Within the broker, the shared core (the one log, the
# definitions store, users, alarms, clients) knows neither protocol's model; Kafka's
# model and AMQP's do not import each other, and neither imports broker.core, the
# facade that composes them (so a later adapter between the two goes through
# broker.log, which both use).
_MODELS = ("portask.broker.kafka", "portask.broker.amqp", "portask.broker.core")
LAYERS = {
    "portask.storage": ("portask.broker", "portask.protocols", "portask.http",
                        "portask.app"),
    "portask.broker": ("portask.protocols", "portask.http", "portask.app"),
    "portask.protocols": ("portask.http", "portask.app"),
    # HTTP reads the broker through its views; wire formats reach it only through
    # interfaces the composition root fills (Topics.codec, a vhost's property codec).
    "portask.http": ("portask.protocols",),
    "portask.broker.log": _MODELS,
    "portask.broker.definitions": _MODELS,
    "portask.broker.users": _MODELS,
    "portask.broker.alarms": _MODELS,
    "portask.broker.clients": _MODELS,
    "portask.broker.kafka": ("portask.broker.amqp", "portask.broker.core"),
    "portask.broker.amqp": ("portask.broker.kafka", "portask.broker.core"),
    "portask.protocols.kafka": ("portask.protocols.amqp",),
    "portask.protocols.amqp": ("portask.protocols.kafka",),
}


def package_dir(package: str) -> Path:
    return ROOT.joinpath(*package.split("."))


def package_files(package: str) -> list[Path]:
    """The files of a package, or the one file of a module."""
    directory = package_dir(package)
    if directory.is_dir():
        return sorted(directory.rglob("*.py"))
    return [directory.with_suffix(".py")]


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str | None = None,
               modules: Collection[str] = ()) -> set[str]:
    """Every module ``path`` (module ``name``) names in an import, and ``from a import b``
    as ``a.b`` too (``b`` may be a submodule); only as ``a.b`` when ``modules`` says it
    is one."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names = {f"{module}.{alias.name}" for alias in node.names}
            if not names <= set(modules):
                found.add(module)
            found.update(names)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    modules = {module_name(path): path for path in package.rglob("*.py")}
    return {name: {m for m in imports_of(path, modules=modules) if m in modules and m != name}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for dep in sorted(graph[node]):
            if dep in on_path:
                return [*path[path.index(dep):], dep]
            if dep not in done:
                cycle = visit(dep)
                if cycle:
                    return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_find_cycle_reports_a_loop_and_accepts_a_chain() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_type_checking_function_level_and_relative_imports_count(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from x.y import z\n\ndef f():\n    import w\n"
                      "    from .sibling import thing\n")
    assert {"x.y", "x.y.z", "w", "pkg.sibling"} <= imports_of(source, "pkg.mod")


def test_amqp_protocol_modules_import_each_other_one_way() -> None:
    graph = import_graph(AMQP)
    # The graph is really read: the connection builds channels from channel.py.
    assert "portask.protocols.amqp.channel" in graph["portask.protocols.amqp.connection"]
    assert find_cycle(graph) is None


def test_amqp_context_imports_none_of_the_modules_it_is_handed_to() -> None:
    deps = import_graph(AMQP)["portask.protocols.amqp.context"]
    users = {f"portask.protocols.amqp.{m}" for m in ("server", "connection", "channel")}
    assert not deps & users


def test_amqp_protocol_reaches_storage_only_through_the_broker() -> None:
    for path in AMQP.rglob("*.py"):
        assert not any(m == "portask.storage" or m.startswith("portask.storage.")
                       for m in imports_of(path)), path


def test_a_package_listing_its_submodules_is_no_cycle_but_a_real_loop_is(
        tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg.a import f\n")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("X = 1\n")
    assert imports_of(pkg / "a.py", "pkg.a", {"pkg", "pkg.a", "pkg.b"}) == {"pkg.b"}
    (pkg / "b.py").write_text("from pkg import f\n")  # f is defined in no submodule
    assert "pkg" in imports_of(pkg / "b.py", "pkg.b", {"pkg", "pkg.a", "pkg.b"})


def test_no_import_cycle_anywhere_in_portask() -> None:
    graph = import_graph(PORTASK)
    # The graph is really read, across packages.
    assert "portask.broker.log.record_log" in graph["portask.broker.kafka.topics"]
    assert find_cycle(graph) is None


@pytest.mark.parametrize(("package", "forbidden"), sorted(LAYERS.items()))
def test_layer_imports_nothing_above_it(package: str, forbidden: tuple[str, ...]) -> None:
    files = package_files(package)
    assert files and all(path.is_file() for path in files)  # the package is there
    wrong = sorted(
        f"{module_name(path)} imports {target}"
        for path in files
        for target in imports_of(path)
        if any(within(target, above) for above in forbidden)
    )
    assert wrong == []


def test_kafka_server_context_and_registry_import_no_api_module() -> None:
    graph = import_graph(KAFKA)
    # The graph is really read: the index imports every API module.
    assert "portask.protocols.kafka.apis.produce" in graph["portask.protocols.kafka.apis"]
    for name in ("server", "context", "registry"):
        deps = graph[f"portask.protocols.kafka.{name}"]
        assert not any(within(m, "portask.protocols.kafka.apis") for m in deps), name


def test_only_the_views_of_the_http_apis_read_the_broker() -> None:
    """Other HTTP modules may name the Broker type (to hand it to a view), nothing more."""
    http = ROOT / "portask" / "http"
    readers = sorted(
        module_name(path) for path in http.rglob("*.py")
        if any(within(m, "portask.broker") and not within(m, "portask.broker.core")
               for m in imports_of(path))
    )
    assert readers == ["portask.http.control.view", "portask.http.kafka.view",
                       "portask.http.management.view"]
