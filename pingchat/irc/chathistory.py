"""IRCv3 ``draft/chathistory``: message history for IRC clients, served from the store.

``CHATHISTORY LATEST|BEFORE|AFTER|AROUND|BETWEEN|TARGETS``, with ``msgid=``
and ``timestamp=`` references; replies come in a ``chathistory`` batch whose
messages carry ``msgid`` and ``time`` tags. A :class:`ChatHistory` is made
for each command and keeps nothing but the IRC connection it serves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from pingchat.errors import ChatError
from pingchat.irc import wire
from pingchat.irc.base import IRCBase
from pingchat.irc.reply import Reply
from pingchat.model import ACCOUNT_NAME_RE, HISTORY_MAX, Message, fold, iso_ms, parse_iso_ms

# What IRC shows for an end-to-end encrypted DM (the server cannot read it).
ENCRYPTED = "[end-to-end encrypted message: open it in the pingchat client]"

NO_ID = 1 << 62  # beyond every message id


@attrs.frozen
class Ref:
    """A CHATHISTORY message reference as ids.

    ``start``: the first message at or after the reference (messages before it
    have smaller ids); ``last_before``: messages after the reference have
    larger ids. For ``msgid=N`` both are N; for a timestamp they differ when
    messages share that millisecond.
    """

    start: int
    last_before: int


class ChatHistory:
    """The CHATHISTORY command as one connection sees it."""

    def __init__(self, proto: IRCBase) -> None:
        self.proto = proto

    def handle(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        self.proto.need(msg, 1)
        sub = msg.params[0].upper()

        def fail_(code: str, *params: str) -> None:
            r.send(wire.format_line("FAIL", ["CHATHISTORY", code, *params], self.proto.server))

        if sub not in ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN", "TARGETS"):
            fail_("INVALID_PARAMS", sub, "Unknown subcommand")
            return None
        need = 5 if sub in ("BETWEEN",) else 4
        if sub == "TARGETS":
            need = 4
        if len(msg.params) < need:
            fail_("INVALID_PARAMS", sub, "Not enough parameters")
            return None
        limit = wire.number(msg.params[need - 1])
        if limit is None:
            fail_("INVALID_PARAMS", sub, "The limit must be a number")
            return None
        if limit < 1:
            fail_("INVALID_PARAMS", sub, "The limit must be positive")
            return None
        limit = min(limit, HISTORY_MAX)
        if sub == "TARGETS":
            return self.targets(r, msg.params[1], msg.params[2], limit, fail_)
        target = msg.params[1]
        where: dict[str, str] = {}
        if target.startswith("#"):
            room = self.proto.service.room_named(target)
            if room is None or self.proto.my_session.folded not in room.members:
                fail_("INVALID_TARGET", sub, target, "No such channel, or you are not in it")
                return None
            where["room"] = room.name
            shown = room.name
        else:
            if self.proto.my_session.guest or not ACCOUNT_NAME_RE.fullmatch(target):
                fail_("INVALID_TARGET", sub, target, "No such conversation")
                return None
            where["with_"] = target
            shown = target
        selectors = msg.params[2 : need - 1]
        parsed: list[tuple[str, int] | None] = []
        for sel in selectors:
            if sel == "*" and sub == "LATEST":
                parsed.append(None)
                continue
            kind, _, value = sel.partition("=")
            try:
                msgid = wire.number(value)
                if kind == "msgid" and msgid is not None:
                    parsed.append(("msgid", msgid))
                elif kind == "timestamp":
                    parsed.append(("timestamp", parse_iso_ms(value)))
                else:
                    raise ValueError(sel)
            except (ValueError, ChatError):
                fail_("INVALID_PARAMS", sub, sel, "Bad message reference")
                return None
        d = self.resolve(where, parsed)

        def query(refs: list[Ref | None]) -> Deferred[list[Message]]:
            return self.query(sub, where, refs, limit)

        def show(messages: list[Message]) -> None:
            self.batch(r, shown, messages)

        def failed(f: Failure) -> None:
            f.trap(ChatError)
            fail_("INVALID_TARGET", sub, target, f.value.message)  # type: ignore[union-attr]

        return d.addCallback(query).addCallbacks(show, failed)

    def resolve(
        self, where: dict[str, str], parsed: list[tuple[str, int] | None]
    ) -> Deferred[list[Ref | None]]:
        """Message references as id bounds (timestamps are looked up in the store)."""
        out: list[Ref | None] = []
        d: Deferred[Any] = succeed(None)
        session = self.proto.my_session

        def lookup(_: object, ts: int) -> Deferred[None]:
            at = self.proto.service.history_id_at(session, ts, **where)  # type: ignore[arg-type]
            after = self.proto.service.history_id_at(session, ts + 1, **where)  # type: ignore[arg-type]

            def both(first: int | None) -> Deferred[None]:
                def done(later: int | None) -> None:
                    start = first if first is not None else NO_ID
                    out.append(Ref(start, later - 1 if later is not None else NO_ID))

                return after.addCallback(done)

            return at.addCallback(both)

        def known(_: object, ident: int | None) -> None:
            out.append(None if ident is None else Ref(ident, ident))

        for ref in parsed:
            if ref is None or ref[0] == "msgid":
                d.addCallback(known, ref[1] if ref is not None else None)
            else:
                d.addCallback(lookup, ref[1])
        return d.addCallback(lambda _: out)

    def query(
        self, sub: str, where: dict[str, str], refs: list[Ref | None], limit: int
    ) -> Deferred[list[Message]]:
        session = self.proto.my_session

        def history(**kw: Any) -> Deferred[list[Message]]:
            return self.proto.service.history(session, **where, **kw)  # type: ignore[arg-type]

        first = refs[0]
        if first is None:  # LATEST *
            return history(limit=limit, newest_first=True)
        if sub == "LATEST":
            return history(after=first.last_before, limit=limit, newest_first=True)
        if sub == "BEFORE":
            return history(before=first.start, limit=limit, newest_first=True)
        if sub == "AFTER":
            return history(after=first.last_before, limit=limit, newest_first=False)
        if sub == "BETWEEN":
            second = refs[1]
            assert second is not None
            if first.last_before < second.start:
                return history(
                    after=first.last_before, before=second.start, limit=limit, newest_first=False
                )
            return history(
                after=second.last_before, before=first.start, limit=limit, newest_first=True
            )
        # AROUND: up to half the limit before the reference, the rest from it on.
        earlier_count = limit // 2

        def later(earlier: list[Message]) -> Deferred[list[Message]]:
            return history(
                after=first.start - 1, limit=limit - len(earlier), newest_first=False
            ).addCallback(lambda rest: earlier + rest)

        if earlier_count == 0:
            return later([])
        return history(before=first.start, limit=earlier_count, newest_first=True).addCallback(
            later
        )

    def lines(self, m: Message) -> list[tuple[dict[str, str], str]]:
        """How a stored message looks on IRC, as ``(tags, line)`` pieces."""
        command = "NOTICE" if m.kind == "notice" else "PRIVMSG"
        text = ENCRYPTED if m.encrypted else m.text
        if m.room is not None:
            source, target = self.proto.sender_mask(m), m.room
        elif fold(m.sender) == fold(self.proto.me):
            source, target = self.proto.mask_of(self.proto.me), m.to or self.proto.me
        else:
            source, target = self.proto.sender_mask(m), self.proto.me
        tags = self.proto.message_tags(m.ts, m.id, m.sender_account)
        out = []
        for i, line in enumerate(self.proto.text_lines(source, command, target, text or "")):
            out.append((tags if i == 0 else {k: v for k, v in tags.items() if k != "msgid"}, line))
        return out

    def batch(self, r: Reply, target: str, messages: list[Message]) -> None:
        batch = "batch" in self.proto.caps
        ref = self.proto.new_batch_id() if batch else ""
        if batch:
            r.send(f":{self.proto.server} BATCH +{ref} chathistory {target}")
        for m in messages:
            if m.deleted_at is not None:
                continue  # a deleted message is left out, as draft/message-redaction prefers
            for tags, line in self.lines(m):
                r.send(line, {"batch": ref, **tags} if batch else tags)
        if batch:
            r.send(f":{self.proto.server} BATCH -{ref}")

    def targets(
        self, r: Reply, first: str, second: str, limit: int, fail_: Callable[..., None]
    ) -> Deferred[Any] | None:
        try:
            times = sorted(
                parse_iso_ms(s.partition("=")[2])
                for s in (first, second)
                if s.startswith("timestamp=")
            )
        except ChatError:
            times = []
        if len(times) != 2:
            fail_("INVALID_PARAMS", "TARGETS", "TARGETS takes two timestamp= references")
            return None

        def show(found: list[tuple[str, int]]) -> None:
            batch = "batch" in self.proto.caps
            ref = self.proto.new_batch_id() if batch else ""
            if batch:
                r.send(f":{self.proto.server} BATCH +{ref} draft/chathistory-targets")
            for name, ts in found:
                r.send(
                    f":{self.proto.server} CHATHISTORY TARGETS {name} {iso_ms(ts)}",
                    {"batch": ref} if batch else None,
                )
            if batch:
                r.send(f":{self.proto.server} BATCH -{ref}")

        # Both bounds are exclusive, as for BETWEEN.
        return self.proto.service.history_targets(
            self.proto.my_session, times[0], times[1], limit
        ).addCallback(show)
