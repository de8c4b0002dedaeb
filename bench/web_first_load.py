"""The web client's first load: what a browser fetches to show the page, and
how many bytes that is compressed as the server sends it (issue 16: under
150 KB).

It starts at ``index.html`` and follows what a browser loads with it: its
scripts, stylesheets and icon, then every module those scripts import
statically (``import ... from``, ``export ... from``, ``import "..."``).
Dynamic ``import()`` and scripts added later (the QR library, loaded only
when two-factor authentication is turned on) are not part of the first load.
``tests/e2e/test_browser_e2e.py`` checks that this list is what Chromium
fetches.

Two ways to measure::

    .venv/bin/python -m bench.web_first_load              # the files, gzipped as the server would
    .venv/bin/python -m bench.web_first_load --url http://localhost:8080/    # a running server

The first compresses each file with the server's gzip settings (Twisted's
``GzipEncoderFactory``: level 9); the second asks a server with
``Accept-Encoding: gzip`` and counts the bodies as they arrive. Exits 1 when
the total is over the limit.
"""

from __future__ import annotations

import argparse
import gzip
import posixpath
import re
import sys
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pingchat.web

STATIC = Path(pingchat.web.__file__).parent / "static"
LIMIT = 150_000  # bytes, compressed: the whole first load
GZIP_LEVEL = 9  # twisted.web.server.GzipEncoderFactory.compressLevel

_TAG = re.compile(r"<(script|link)\b([^>]*)>", re.IGNORECASE)
_ATTR = re.compile(r'([a-zA-Z-]+)(?:\s*=\s*"([^"]*)")?')
# A static import or re-export: `import x from "m"`, `import {a,\n b} from "m"`,
# `export * from "m"`, `import "m"`. `import(` (dynamic) does not match.
_IMPORT = re.compile(
    r"""(?:^|[;\n])\s*(?:import|export)(?:\s+[^'";()]*?\s+from)?\s*["']([^"']+)["']""",
)
_COMMENT = re.compile(r"/\*.*?\*/|^\s*//[^\n]*", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class Fetched:
    path: str  # below the site's root, e.g. "js/main.js"
    size: int  # bytes of the file
    sent: int  # bytes on the wire (gzip when the type is compressed)


def _attrs(text: str) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2) or "" for m in _ATTR.finditer(text)}


def _resolve(base: str, ref: str) -> str | None:
    """*ref* (as written in *base*) as a path below the root; None if elsewhere."""
    if re.match(r"^[a-z][a-z0-9+.-]*:|^//", ref, re.IGNORECASE):
        return None  # another scheme or host: not the server's
    ref = ref.split("#", 1)[0].split("?", 1)[0]
    joined = ref.lstrip("/") if ref.startswith("/") else posixpath.join(
        posixpath.dirname(base), ref)
    return posixpath.normpath(joined)


def page_assets(html: str) -> list[tuple[str, bool]]:
    """What ``index.html`` makes the browser fetch: (reference, is a module)."""
    found = []
    for tag, rest in _TAG.findall(html):
        attrs = _attrs(rest)
        if tag.lower() == "script" and "src" in attrs:
            found.append((attrs["src"], attrs.get("type") == "module"))
        elif tag.lower() == "link" and "href" in attrs:
            rel = set(attrs.get("rel", "").lower().split())
            if rel & {"stylesheet", "icon", "modulepreload", "manifest"}:
                found.append((attrs["href"], "modulepreload" in rel))
    return found


def static_imports(source: str) -> list[str]:
    """The specifiers a module imports statically, in order."""
    return _IMPORT.findall(_COMMENT.sub("", source))


def first_load(read: Callable[[str], bytes]) -> list[str]:
    """The paths a browser fetches for the first load, in the order found.

    *read(path)* returns a file's content (uncompressed).
    """
    order = ["index.html"]
    modules: list[str] = []
    for ref, is_module in page_assets(read("index.html").decode()):
        path = _resolve("index.html", ref)
        if path is not None and path not in order:
            order.append(path)
            if is_module:
                modules.append(path)
    while modules:
        module = modules.pop(0)
        for ref in static_imports(read(module).decode()):
            path = _resolve(module, ref)
            if path is not None and path not in order:
                order.append(path)
                modules.append(path)
    return order


def gzipped_size(data: bytes) -> int:
    """Bytes of *data* compressed as the server compresses a response."""
    encoder = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return len(encoder.compress(data) + encoder.flush())


def measure_files(static: Path = STATIC) -> list[Fetched]:
    """The first load from the files, each gzipped as the server would send it."""

    def read(path: str) -> bytes:
        return (static / path).read_bytes()

    return [Fetched(p, len(data), gzipped_size(data))
            for p in first_load(read) for data in [read(p)]]


def measure_url(url: str, timeout: float = 10.0) -> list[Fetched]:
    """The first load from a running server, counted as its responses arrive."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    base = url if url.endswith("/") else url + "/"
    got: dict[str, tuple[bytes, int]] = {}

    def read(path: str) -> bytes:
        if path not in got:
            request = urllib.request.Request(  # noqa: S310 (http and https only, checked above)
                base + path, headers={"Accept-Encoding": "gzip"})
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                body = response.read()
                if response.headers.get("Content-Encoding") == "gzip":
                    got[path] = (gzip.decompress(body), len(body))
                else:
                    got[path] = (body, len(body))
        return got[path][0]

    return [Fetched(p, len(read(p)), got[p][1]) for p in first_load(read)]


def report(fetched: list[Fetched]) -> str:
    lines = [f"{'file':<32} {'bytes':>8} {'sent':>8}"]
    for f in fetched:
        lines.append(f"{f.path:<32} {f.size:>8} {f.sent:>8}")
    size, sent = sum(f.size for f in fetched), sum(f.sent for f in fetched)
    lines.append(f"{f'{len(fetched)} files':<32} {size:>8} {sent:>8}")
    verdict = "under" if sent <= LIMIT else "OVER"
    lines.append(f"first load: {sent / 1000:.1f} KB compressed ({size / 1000:.1f} KB of files),"
                 f" {verdict} the {LIMIT // 1000} KB limit")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server's page, e.g. http://localhost:8080/")
    args = parser.parse_args(argv)
    fetched = measure_url(args.url) if args.url else measure_files()
    print(report(fetched))
    return 0 if sum(f.sent for f in fetched) <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
