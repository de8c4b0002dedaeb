"""The native door's message ops: ``say``, ``dm``, ``history``, ``message.delete``.

Part of :class:`~pingchat.native.protocol.NativeProtocol`, which inherits it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from pingchat.errors import BadRequest
from pingchat.model import (
    check_account_name,
    check_ciphertext,
    check_device_id,
    check_envelopes,
    iso_ms,
)
from pingchat.native.base import NativeBase, field


class MessagingOps(NativeBase):
    """Room messages and DMs (plain or sealed per device), their history, deleting one."""

    def op_say(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        room = field(req, "room")
        text = field(req, "text")
        return self.factory.service.say(self.me, room, text).addCallback(
            lambda m: {"msg_id": m.id, "ts": iso_ms(m.ts)}
        )

    def op_dm(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``dm {to, text}``, ``dm {to, ciphertext, nonce?}`` (one key) or
        ``dm {to, device, envelopes}`` (sealed per device, docs/e2e.md)."""
        to = check_account_name(field(req, "to"))
        text = field(req, "text", required=False)
        ciphertext = field(req, "ciphertext", required=False)
        nonce = field(req, "nonce", required=False)
        device = field(req, "device", required=False)
        envelopes = req.get("envelopes")
        if sum(v is not None for v in (text, ciphertext, envelopes)) != 1:
            raise BadRequest("dm needs exactly one of text, ciphertext or envelopes")
        if envelopes is not None:
            if nonce is not None:
                raise BadRequest("nonce goes with ciphertext; each envelope has its own")
            if device is None:
                raise BadRequest("missing field: device (the sending device, with envelopes)")
            device = check_device_id(device)
            envelopes = check_envelopes(envelopes, to, self.me.name)
        elif device is not None:
            raise BadRequest("device goes with envelopes")
        elif ciphertext is not None:
            check_ciphertext(ciphertext, nonce)
        elif nonce is not None:
            raise BadRequest("nonce goes with ciphertext")
        d = self.factory.service.dm(
            self.me,
            to,
            text=text,
            ciphertext=ciphertext,
            nonce=nonce,
            sender_device=device,
            envelopes=envelopes,
        )
        return d.addCallback(
            lambda r: {"msg_id": r[0].id, "ts": iso_ms(r[0].ts), "delivered": r[1]}
        )

    def op_history(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        room = field(req, "room", required=False)
        with_ = field(req, "with", required=False)
        before = field(req, "before", int, required=False)
        after = field(req, "after", int, required=False)
        limit = field(req, "limit", int, required=False)
        if limit is None:
            limit = 50
        elif limit < 1 or limit > 200:
            raise BadRequest("limit must be between 1 and 200")
        # Paging back (before, or nothing) takes the newest of the range;
        # catching up (after alone) takes the oldest, so it can go on from there.
        d = self.factory.service.history(
            self.me,
            room=room,
            with_=with_,
            before=before,
            after=after,
            limit=limit,
            newest_first=after is None or before is not None,
        )
        return d.addCallback(lambda ms: {"messages": [m.to_event() for m in ms]})

    def op_message_delete(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``message.delete {msg_id, reason?}``: the author, the room's operators or a
        server operator delete a message; everyone who could see it gets ``deleted``."""
        msg_id = field(req, "msg_id", int)
        reason = field(req, "reason", required=False)
        d = self.factory.service.moderation.delete_message(self.me, msg_id, reason)
        return d.addCallback(lambda _: {})
