"""The web client's first load (``bench/web_first_load.py``): what it counts,
and that the page stays under 150 KB compressed (issue 16). A size check,
not a timing."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bench.web_first_load import (
    LIMIT,
    STATIC,
    first_load,
    gzipped_size,
    measure_files,
    measure_url,
    report,
    static_imports,
)
from tests.e2e.harness import ServerProcess


class FirstLoadSizeTests(SynchronousTestCase):
    def test_the_first_load_stays_under_150_kb_compressed(self) -> None:
        fetched = measure_files()
        total = sum(f.sent for f in fetched)
        self.assertLess(total, LIMIT, report(fetched))
        paths = [f.path for f in fetched]
        for path in ("index.html", "app.css", "icon.svg", "js/theme-boot.js", "js/main.js",
                     "js/client.js", "js/e2e.js", "js/ui/shell.js", "vendor/nacl-fast.min.js"):
            self.assertIn(path, paths)
        # Loaded only when two-factor authentication is turned on.
        self.assertNotIn("vendor/qrcode.js", paths)
        # Every module the page has is reached (a module nobody imports is dead code).
        modules = {str(p.relative_to(STATIC)) for p in (STATIC / "js").rglob("*.js")}
        self.assertEqual(modules - set(paths), set())


class FirstLoadWalkTests(SynchronousTestCase):
    def site(self, files: dict[str, str]) -> Path:
        root = Path(tempfile.mkdtemp(prefix="pingchat-first-load-"))
        self.addCleanup(shutil.rmtree, root, True)
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        return root

    def test_it_follows_static_imports_and_not_dynamic_ones(self) -> None:
        root = self.site({
            "index.html": '<link rel="stylesheet" href="a.css"><link rel="icon" href="i.svg">'
                          '<link rel="preconnect" href="https://cdn.example">'
                          '<script src="classic.js" defer></script>'
                          '<script type="module" src="js/main.js"></script>',
            "a.css": "body{}", "i.svg": "<svg/>", "classic.js": 'import("./never.js")',
            "js/main.js": 'import { a,\n  b } from "./lib/a.js";\nimport "../side.js";\n'
                          '// import { x } from "./commented.js";\n'
                          'const later = () => import("./lazy.js");\n',
            "js/lib/a.js": 'export * from "./b.js";\nexport const a = 1;\n',
            "js/lib/b.js": 'import { a } from "./a.js";\nexport const b = "from";\n',
            "side.js": "",
        })
        fetched = measure_files(root)
        self.assertEqual([f.path for f in fetched], [
            "index.html", "a.css", "i.svg", "classic.js", "js/main.js",
            "js/lib/a.js", "side.js", "js/lib/b.js"])
        self.assertEqual(fetched[1].sent, gzipped_size(b"body{}"))

    def test_static_imports(self) -> None:
        self.assertEqual(static_imports('import x from "./x.js"; export { y } from "./y.js"'),
                         ["./x.js", "./y.js"])
        self.assertEqual(static_imports("await import('./lazy.js');"), [])

    def test_an_absent_page_asset_is_an_error_not_a_smaller_number(self) -> None:
        root = self.site({"index.html": '<script type="module" src="gone.js"></script>'})
        with self.assertRaises(FileNotFoundError):
            first_load(lambda p: (root / p).read_bytes())


class FirstLoadFromAServerTests(SynchronousTestCase):
    def test_a_running_server_sends_what_the_files_say(self) -> None:
        server = ServerProcess(web="tcp:0:interface=127.0.0.1").start()
        self.addCleanup(server.cleanup)
        sent = measure_url(f"http://localhost:{server.port('WebSite')}/")
        files = measure_files()
        self.assertEqual([(f.path, f.size) for f in sent], [(f.path, f.size) for f in files])
        # Compressed on the wire (by Twisted's gzip encoder) as the files say.
        self.assertEqual([f.sent for f in sent], [f.sent for f in files])
        self.assertLess(sum(f.sent for f in sent), LIMIT)
