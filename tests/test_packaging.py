"""What a wheel carries: every package of pingchat, not only what an editable install finds.

``pyproject.toml`` lists the packages by hand (setuptools' discovery refuses
the flat layout with ``twisted/plugins``). A package missing from the list
works in a development checkout and is absent from an installed server.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import pingchat

ROOT = Path(pingchat.__file__).parent
PYPROJECT = ROOT.parent / "pyproject.toml"


class PackagingTests(SynchronousTestCase):
    def test_every_package_is_listed_in_pyproject(self) -> None:
        listed = set(tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"])
        found = {
            ".".join(("pingchat", *init.parent.relative_to(ROOT).parts))
            for init in ROOT.rglob("__init__.py")
        }
        self.assertEqual(sorted(found - listed), [])
