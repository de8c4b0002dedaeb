"""IStore is the whole store: both backends provide it, everyone else uses only it."""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

import pingchat
from pingchat.interfaces import IStore
from pingchat.store import Store
from tests.backends import StoreBackend, on_postgresql

ROOT = Path(pingchat.__file__).parent


def store_calls() -> dict[str, set[str]]:
    """Method name -> the modules outside pingchat/store/ that call it on a store
    (``store.x(...)``, ``self.store.x(...)``, ``self._store.x(...)``, ``server.store.x(...)``)."""
    found: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        if path.relative_to(ROOT).parts[0] == "store":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = node.func.value
            name = (
                receiver.id
                if isinstance(receiver, ast.Name)
                else receiver.attr
                if isinstance(receiver, ast.Attribute)
                else None
            )
            if name in ("store", "_store"):
                found.setdefault(node.func.attr, set()).add(str(path.relative_to(ROOT)))
    return found


class InterfaceTests(StoreBackend, SynchronousTestCase):
    def test_the_store_provides_every_method_of_istore(self) -> None:
        store = Store(self.open_database())
        self.assertTrue(verifyObject(IStore, store))
        self.assertGreaterEqual(len(list(IStore.names())), 50)

    def test_nothing_outside_the_store_calls_a_method_istore_lacks(self) -> None:
        calls = store_calls()
        self.assertGreaterEqual(len(calls), 40)  # the scan finds the callers
        missing = {name: sorted(where) for name, where in calls.items()}
        for name in IStore.names():
            missing.pop(name, None)
        self.assertEqual(missing, {})

    def test_every_public_method_of_the_store_is_in_istore(self) -> None:
        public = {n for n in dir(Store) if not n.startswith("_") and callable(getattr(Store, n))}
        self.assertEqual(sorted(public - set(IStore.names())), [])


class ImplementationTests(SynchronousTestCase):
    def test_both_implementations_declare_istore(self) -> None:
        from pingchat.store.postgresql import PostgreSQLStore
        from pingchat.store.sqlite import SQLiteStore

        for cls in (SQLiteStore, PostgreSQLStore):
            self.assertTrue(IStore.implementedBy(cls), cls)


InterfaceTestsOnPostgreSQL = on_postgresql(InterfaceTests)
