"""Bad input: what a broken or hostile client sends, and what must come back.

A round of probes runs every ``Settings.bad_every`` seconds on connections of
its own, from other loopback addresses than the rest of the soak
(``127.0.0.2``; wrong passwords from ``127.0.0.3``), so that the login
back-off they provoke holds back only them. Each probe either passes or
records why not; the rule for each:

native (TLS, JSON lines)
  random bytes, invalid UTF-8
      an error reply (``ok: false``), never a crash
  a lone surrogate (``"\\ud800"``) in ``login``, ``register``, ``resume``,
  ``say``, ``dm``, ``away``, ``join``, ``passwd``
      ``bad_request`` or ``bad_json``: rejected at the edge, before any op
  ``NaN``, ``Infinity``, ``-Infinity``, ``1e400`` as the id
      a reply that is JSON (these are not) and an error
  ``"op": null``
      an error that echoes the request's id
  a 20 KiB line
      ``line_too_long``, then the connection still answers ``ping``
  an unknown op
      ``unknown_op``
  150 requests in one write (above ``--rate-burst``)
      every one answered (``ok`` or ``rate_limited``), or a disconnect
  8 wrong passwords for one account
      ``auth_failed`` then ``rate_limited``; its owner still logs in from
      another address
IRC (plain)
  random bytes, invalid UTF-8 in a PRIVMSG
      no crash, and the connection still answers (or is closed with ERROR)
  a 600-byte line, 5,000 bytes of tags
      ``417``
  an unknown command
      ``421``
  a paste of ``paste_lines`` PRIVMSGs in one write (default 150)
      every line echoed with a ``msgid`` (and then found in the store): a
      paste under the documented bound is slowed down, not dropped
  ``flood_lines`` PINGs in one write (default 1000)
      every one answered, or ``ERROR ... Excess Flood``
  a wrong PASS
      ``464``/``ERROR``, never ``001``

Any line with ``internal_error``/``INTERNAL_ERROR`` seen by any soak
connection counts as a crash (``Tally.crashes``); a native line that is not
JSON as malformed (``Tally.malformed``).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.soak.clients import Door, SoakClient, Tally, connect, split_privmsg, strict_json
from bench.soak.load import PASSWORD, Counts, text

SOURCE = "127.0.0.2"
GUESSER = "127.0.0.3"
SURROGATE = "\\ud800x"  # as it appears on the wire: a JSON escape of a lone surrogate


class ProbeFailed(Exception):
    pass


async def reply(c: SoakClient, timeout: float = 15.0) -> dict[str, Any] | None:
    """The next reply on a raw native connection (events skipped); None once closed."""
    while True:
        line = await c.next_line(timeout)
        if not line:
            return None
        try:
            msg = strict_json(line)
        except ValueError as e:
            raise ProbeFailed(f"the reply is not JSON ({e}): {line[:200]!r}") from None
        if not isinstance(msg, dict):
            raise ProbeFailed(f"the reply is not an object: {line[:200]!r}")
        if "event" not in msg:
            return msg


async def ask(c: SoakClient, line: bytes | str | dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(line, dict):
        line = json.dumps(line)
    if isinstance(line, str):
        line = line.encode()
    c.write(line + b"\n")
    return await reply(c)


def expect_error(msg: dict[str, Any] | None, codes: set[str] | None = None,
                 rid: Any = ...) -> str:
    if msg is None:
        return "disconnected"
    if msg.get("ok") is not False:
        raise ProbeFailed(f"expected an error, got {json.dumps(msg)[:200]}")
    code = str(msg.get("error", {}).get("code"))
    if codes is not None and code not in codes:
        raise ProbeFailed(f"expected {'/'.join(sorted(codes))}, got {code}: "
                          f"{json.dumps(msg)[:200]}")
    if rid is not ... and msg.get("id") != rid:
        raise ProbeFailed(f"the id {rid!r} was not echoed: {json.dumps(msg)[:200]}")
    return code


class Probes:
    """One round after another of every probe; results by probe name."""

    def __init__(self, doors: dict[str, Door], tally: Tally, paste_lines: int,
                 flood_lines: int) -> None:
        self.doors = doors
        self.tally = tally
        self.paste_lines = paste_lines
        self.flood_lines = flood_lines
        self.results: dict[str, Counts] = {}
        self.rounds = 0
        self.victims = 0

    def totals(self) -> tuple[int, int]:
        return (sum(c.ok for c in self.results.values()),
                sum(c.failed for c in self.results.values()))

    def failures(self) -> list[str]:
        return [f"{name}: {c.failed} failed, first: {c.first_error}"
                for name, c in sorted(self.results.items()) if c.failed]

    async def check(self, name: str, probe: Callable[[], Awaitable[None]]) -> None:
        counts = self.results.setdefault(name, Counts())
        try:
            await probe()
            counts.ok += 1
        except ProbeFailed as e:
            counts.fail(str(e))
        except (ConnectionError, TimeoutError, OSError) as e:
            counts.fail(f"{type(e).__name__}: {e}")

    async def round(self) -> None:
        self.rounds += 1
        await self.check("native probes' session", self.native)
        await self.check("native wrong passwords", self.wrong_passwords)
        await self.check("irc probes' session", self.irc)
        await self.check("irc paste", self.paste)
        await self.check("irc flood", self.flood)
        await self.check("irc wrong PASS", self.irc_wrong_pass)

    # -- native ----------------------------------------------------------------------

    async def native(self) -> None:
        c = await connect(self.doors["native"], self.tally, source=SOURCE, raw=True)
        try:
            await self._native(c)
        finally:
            c.close()

    async def _native(self, c: SoakClient) -> None:
        async def one(name: str, line: bytes | str, codes: set[str] | None = None,
                      rid: Any = ...) -> None:
            async def probe() -> None:
                expect_error(await ask(c, line), codes, rid)
            await self.check(name, probe)

        async def surrogates(ops: dict[str, str]) -> None:
            for op, fields in ops.items():
                await one(f"native surrogate in {op}",
                          f'{{"id":"s-{op}","op":"{op}",{fields}}}', {"bad_request", "bad_json"})

        await c.next_line()  # hello
        junk = bytes(random.randrange(0x20, 0x100) for _ in range(random.randrange(1, 200)))
        await one("native random bytes", b"!" + junk)
        await one("native invalid UTF-8", b'{"id":"u","op":"ping","x":"caf\xe9 \xff\xfe"}',
                  {"bad_json"})
        await surrogates({
            "login": f'"user":"bad","password":"{SURROGATE}"',
            "register": f'"user":"bad","password":"pass{SURROGATE}word"',
            "resume": f'"token":"{SURROGATE}"',
        })
        for const in ("NaN", "Infinity", "-Infinity", "1e400"):
            await one(f"native id {const}", f'{{"id":{const},"op":"ping"}}', {"bad_json"})
        await one("native op null", '{"id":"keep-me","op":null}', rid="keep-me")
        await one("native unknown op", '{"id":"u2","op":"no.such.op"}', {"unknown_op"})

        async def oversized() -> None:
            expect_error(await ask(c, b"a" * 20_000), {"line_too_long"})
            msg = await ask(c, {"id": "after", "op": "ping"})
            if msg is None or not msg.get("ok"):
                raise ProbeFailed(f"no pong after a long line: {msg}")

        await self.check("native 20 KiB line", oversized)
        logged = await ask(c, {"id": "in", "op": "login", "user": "bad", "password": PASSWORD})
        if not (logged and logged.get("ok")):
            raise ProbeFailed(f"the bad-input account could not log in: {logged}")
        await ask(c, {"id": "j", "op": "join", "room": "#soakbad"})
        await surrogates({
            "say": f'"room":"#soakbad","text":"hi {SURROGATE}"',
            "dm": f'"to":"o0","text":"{SURROGATE}"',
            "away": f'"text":"{SURROGATE}"',
            "join": f'"room":"#x{SURROGATE}"',
            "passwd": f'"old":"{SURROGATE}","new":"{SURROGATE}-long-enough"',
        })

        async def flood() -> None:
            n = 150
            c.write(b"".join(b'{"id":%d,"op":"ping"}\n' % i for i in range(n)))
            seen: set[Any] = set()
            while len(seen) < n:
                msg = await reply(c, 30)
                if msg is None:
                    return  # disconnected: allowed
                code = msg.get("error", {}).get("code") if not msg.get("ok") else "ok"
                if code not in ("ok", "rate_limited"):
                    raise ProbeFailed(f"flood: unexpected reply {json.dumps(msg)[:200]}")
                seen.add(msg.get("id"))
            await asyncio.sleep(3.5)  # the bucket refills before the next probe

        await self.check("native flood", flood)

    async def wrong_passwords(self) -> None:
        victim = f"v{self.victims % 4}"
        self.victims += 1
        c = await connect(self.doors["native"], self.tally, source=GUESSER, raw=True)
        try:
            await c.next_line()  # hello
            codes = []
            for i in range(8):
                msg = await ask(c, {"id": i, "op": "login", "user": victim,
                                    "password": f"wrong-{i}-{time.time()}"})
                codes.append(expect_error(msg, {"auth_failed", "rate_limited"}))
        finally:
            c.close()
        if "rate_limited" not in codes:
            raise ProbeFailed(f"8 wrong passwords were never throttled: {codes}")
        owner = await connect(self.doors["native"], self.tally, raw=True)
        try:
            await owner.next_line()
            msg = await ask(owner, {"id": 1, "op": "login", "user": victim, "password": PASSWORD})
            if not (msg and msg.get("ok")):
                raise ProbeFailed(f"the owner of {victim} was locked out by another address's "
                                  f"guesses: {json.dumps(msg)[:200]}")
        finally:
            owner.close()

    # -- IRC ---------------------------------------------------------------------------

    async def irc_login(self, account: str, source: str = SOURCE) -> SoakClient:
        c = await connect(self.doors["irc"], self.tally, source=source, raw=True)
        c.name = account
        c.write(b"CAP REQ :echo-message message-tags\r\n"
                + f"PASS {account}:{PASSWORD}\r\nNICK {account}\r\nUSER {account} 0 * :x\r\n"
                  "CAP END\r\n".encode())
        while True:
            line = await c.next_line(30)
            if not line:
                raise ProbeFailed(f"IRC login of {account} closed")
            if b" 001 " in line:
                return c

    async def barrier(self, c: SoakClient, lines: bytes, tag: str) -> list[bytes] | None:
        """Send *lines*, then a PING; the lines up to its PONG (None: closed)."""
        c.write(lines + f"PING :{tag}\r\n".encode())
        seen = []
        while True:
            line = await c.next_line(30)
            if not line:
                return None
            if b"PONG" in line and tag.encode() in line:
                return seen
            seen.append(line)

    async def irc(self) -> None:
        c = await self.irc_login("badirc")
        try:
            await self.barrier(c, b"JOIN #soakbad\r\n", "joined")

            async def survives(lines: bytes, want: bytes | None = None) -> None:
                seen = await self.barrier(c, lines, f"b{random.randrange(10**6)}")
                if seen is None:
                    raise ProbeFailed("the connection was closed")
                if want is not None and not any(want in line for line in seen):
                    raise ProbeFailed(f"expected {want!r}, got {seen[:5]}")

            junk = bytes(random.choice(range(0x20, 0x100)) for _ in range(100))
            await self.check("irc random bytes", lambda: survives(junk + b"\r\n"))
            await self.check("irc invalid UTF-8", lambda: survives(
                b"PRIVMSG #soakbad :caf\xe9 \xff\xfe \xed\xa0\x80\r\n"))
            await self.check("irc 600-byte line", lambda: survives(
                b"PRIVMSG #soakbad :" + b"x" * 600 + b"\r\n", b" 417 "))
            await self.check("irc 5000 bytes of tags", lambda: survives(
                b"@+a=" + b"y" * 5000 + b" PRIVMSG #soakbad :hi\r\n", b" 417 "))
            await self.check("irc unknown command", lambda: survives(
                b"FROBNICATE now\r\n", b" 421 "))
        finally:
            c.close()

    async def paste(self) -> None:
        c = await self.irc_login("paster")
        try:
            await self.barrier(c, b"JOIN #soakpaste\r\n", "joined")
            lines = [text("paste") for _ in range(self.paste_lines)]
            c.write(b"".join(f"PRIVMSG #soakpaste :{t}\r\n".encode() for t in lines))
            waiting = set(lines)
            echoed: dict[str, int] = {}
            closing = b""
            deadline = time.monotonic() + self.paste_lines / 5 + 30
            while waiting and time.monotonic() < deadline:
                try:
                    line = await c.next_line(max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    break
                if not line:
                    break
                if line.startswith(b"ERROR"):
                    closing = line
                if b" PRIVMSG " in line:
                    tags, _prefix, body = split_privmsg(line)
                    if body in waiting and tags.get("msgid", "").isdigit():
                        waiting.discard(body)
                        echoed[body] = int(tags["msgid"])
            for body, msg_id in echoed.items():
                self.tally.ack(msg_id, body)
            if waiting:
                raise ProbeFailed(
                    f"a paste of {self.paste_lines} lines: {len(echoed)} echoed, "
                    f"{len(waiting)} lost" + (f", then {closing[:100]!r}" if closing else ""))
        finally:
            c.close()

    async def flood(self) -> None:
        c = await self.irc_login("flooder")
        try:
            n = self.flood_lines
            c.write(b"".join(b"PING :f%d\r\n" % i for i in range(n)))
            pongs = 0
            deadline = time.monotonic() + n / 10 + 30
            while time.monotonic() < deadline:
                line = await c.next_line(max(0.1, deadline - time.monotonic()))
                if not line:
                    raise ProbeFailed(f"closed without ERROR after {pongs} of {n} PONGs")
                if line.startswith(b"ERROR"):
                    if b"Excess Flood" not in line:
                        raise ProbeFailed(f"closed with {line[:100]!r}")
                    return
                pongs += b"PONG" in line
                if pongs == n:
                    return
            raise ProbeFailed(f"neither answered nor disconnected: {pongs} of {n} PONGs")
        finally:
            c.close()

    async def irc_wrong_pass(self) -> None:
        c = await connect(self.doors["irc"], self.tally, source=GUESSER, raw=True)
        try:
            c.write(b"PASS v0:not-the-password\r\nNICK v0\r\nUSER v0 0 * :x\r\n")
            while True:
                line = await c.next_line(30)
                if not line or line.startswith(b"ERROR") or b" 464 " in line:
                    return
                if b" 001 " in line:
                    raise ProbeFailed("a wrong PASS was let in")
        finally:
            c.close()
