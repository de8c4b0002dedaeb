"""The layers of pingchat, as its own imports draw them (docs/architecture.md).

Every import counts: at the top of a module, inside a function and under
``TYPE_CHECKING``; a loop that only the type checker follows is a loop too.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import pingchat

ROOT = Path(pingchat.__file__).parent
DOORS = ("pingchat.irc", "pingchat.native", "pingchat.admin", "pingchat.web")


def module_names() -> dict[str, Path]:
    """Every module of the pingchat package, by its dotted name."""
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = ("pingchat", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the pingchat modules it imports (a package's name if no module)."""
    modules = module_names()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                # "from pingchat.irc import wire" imports the module pingchat.irc.wire;
                # "from pingchat.store import Database", a name of the package.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                if target.startswith("pingchat"):
                    resolved = resolve(target)
                    if resolved is not None and resolved != name:
                        found.add(resolved)
        graph[name] = found
    return graph


def under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


class LayeringTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.graph = import_graph()

    def test_no_modules_import_each_other_in_a_loop(self) -> None:
        try:
            graphlib.TopologicalSorter(self.graph).prepare()
        except graphlib.CycleError as e:
            self.fail(f"an import loop: {' -> '.join(e.args[1])}")

    def test_the_model_imports_nothing_of_pingchat_but_its_errors(self) -> None:
        self.assertLessEqual(self.graph["pingchat.model"], {"pingchat", "pingchat.errors"})

    def test_the_interfaces_import_only_the_model(self) -> None:
        self.assertLessEqual(self.graph["pingchat.interfaces"], {"pingchat", "pingchat.model"})

    def test_the_store_imports_nothing_above_it(self) -> None:
        above = ("pingchat.chat", "pingchat.auth", *DOORS, "pingchat.tap", "pingchat.server")
        for name, imported in self.graph.items():
            if under(name, "pingchat.store"):
                self.assertEqual([i for i in imported if under(i, *above)], [], name)

    def test_only_the_wiring_imports_the_cluster(self) -> None:
        """The bus is a fan-out handed to the chat service by tap.py; nothing
        below the wiring knows there is one (docs/architecture.md)."""
        for name, imported in self.graph.items():
            if not under(name, "pingchat.cluster", "pingchat.tap"):
                self.assertEqual([i for i in imported if under(i, "pingchat.cluster")], [], name)

    def test_doors_never_import_the_store(self) -> None:
        for name, imported in self.graph.items():
            if under(name, *DOORS):
                self.assertEqual([i for i in imported if under(i, "pingchat.store")], [], name)

    def test_the_irc_native_and_admin_doors_never_import_one_another(self) -> None:
        doors = ("pingchat.irc", "pingchat.native", "pingchat.admin")
        for name, imported in self.graph.items():
            for door in doors:
                if under(name, door):
                    others = [d for d in doors if d != door]
                    self.assertEqual([i for i in imported if under(i, *others)], [], name)
