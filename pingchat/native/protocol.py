"""The PingChat protocol door: JSON lines <-> the chat service.

The protocol instance is the *mind* passed to ``portal.login``: the service
calls its :class:`~pingchat.interfaces.IChatMind` methods to deliver events.
It translates; it owns no chat state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pingchat import PROTOCOL_VERSION, __version__
from pingchat.auth.checkers import PasswordCredentials, TokenCredentials
from pingchat.chat.service import Session
from pingchat.errors import BadRequest, ChatError, NotAuthenticated, RateLimited
from pingchat.interfaces import IChatAvatar, IChatMind
from pingchat.model import (
    ROOM_FLAGS,
    Message,
    Room,
    check_account_name,
    check_ciphertext,
    check_device_id,
    check_device_label,
    check_envelopes,
    check_room_name,
    iso_ms,
)
from pingchat.native import wire
from pingchat.output import BoundedOutput

log = Logger()

PUBLIC_OPS = frozenset({"register", "login", "resume", "recover", "ping"})


def _field(req: dict[str, Any], name: str, kind: type = str, required: bool = True) -> Any:
    value = req.get(name)
    if value is None:
        if required:
            raise BadRequest(f"missing field: {name}")
        return None
    if kind is int and isinstance(value, bool):
        raise BadRequest(f"{name} must be an integer")
    if not isinstance(value, kind):
        raise BadRequest(f"{name} must be a {'string' if kind is str else kind.__name__}")
    return value


@implementer(IChatMind)
class NativeProtocol(BoundedOutput, Protocol):
    door = "native"

    def __init__(self, factory: Any) -> None:
        # The NativeFactory that builds it, from pingchat.native.factory, which imports
        # this module: it is not named here (Protocol.factory is Any in Twisted).
        self.factory = factory
        self.framer = wire.LineFramer(factory.max_line)
        self.session: Session | None = None
        self._logout: Callable[[], None] | None = None
        self._authenticating = False
        self.address: str | None = None
        self.closed = False

    # -- connection ------------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.address = getattr(peer, "host", None)
        self.bucket = self.factory.new_bucket()
        self.factory.connections.add(self)
        self.start_bounded_output()
        self.send(
            wire.event(
                "hello",
                server=self.factory.service.server_name,
                version=__version__,
                protocol=PROTOCOL_VERSION,
                registration=self.factory.accounts.registration,
            )
        )

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.closed = True
        self.factory.connections.discard(self)
        self._end_session()

    def _end_session(self) -> None:
        logout, self._logout, self.session = self._logout, None, None
        if logout is not None:
            logout()

    def send(self, obj: dict[str, Any]) -> None:
        """Write one reply or event; what JSON cannot hold is never written.

        A reply that cannot be encoded (a server bug: the parser lets in no
        NaN, Infinity or lone surrogate) still answers its request, with an
        ``internal_error``; such an event is logged and dropped.
        """
        if self.closed or self.transport is None:
            return
        try:
            line = wire.encode(obj)
        except ValueError:
            log.failure(
                "not sent: a {kind} that is not JSON", kind="reply" if "ok" in obj else "event"
            )
            if "ok" not in obj:
                return
            line = wire.encode(wire.error(obj.get("id"), "internal_error", "internal server error"))
        self.send_line(line)

    def send_line(self, data: bytes) -> None:
        """Write one encoded line, or drop a client that has stopped reading."""
        self.write_bounded(data)

    def max_backlog(self) -> int:
        return self.factory.max_backlog

    def who(self) -> str | None:
        return self.session.name if self.session else None

    def dataReceived(self, data: bytes) -> None:
        for line in self.framer.feed(data):
            if self.closed:
                return
            if isinstance(line, wire.LineTooLong):
                self.send(
                    wire.error(
                        None,
                        "line_too_long",
                        f"a line may be at most {self.framer.max_line} bytes;"
                        f" a line of {line.length} bytes was discarded",
                    )
                )
                continue
            if line.strip():
                self.line_received(line)

    # -- requests --------------------------------------------------------------

    def line_received(self, line: bytes) -> None:
        """Answer one request line, exactly once, echoing its id when it had a valid one.

        Every door that carries native requests (TLS lines, WebSocket text
        frames) comes through here: ``wire.parse_request`` refuses what is not
        JSON or not Unicode text before any op sees it. Every line counts
        toward the request rate, the refused ones too.
        """
        refused: wire.RefusedLine | None = None
        try:
            req = wire.parse_request(line)
        except wire.RefusedLine as e:
            refused, req = e, {}
        request_id = refused.request_id if refused else req.get("id")
        try:
            wait = self.bucket.take(self.factory.clock.seconds())
            if wait > 0:
                raise RateLimited(f"too many requests; retry after {wait:.2f}s", wait)
            if refused is not None:
                raise refused
            op = req["op"]
            handler = getattr(self, "op_" + op.replace(".", "_"), None)
            if handler is None or not op.replace(".", "_").isidentifier():
                self.send(wire.error(request_id, "unknown_op", f"unknown op: {op}"))
                return
            if self.session is None and op not in PUBLIC_OPS:
                raise NotAuthenticated(f"log in before using {op}")
            d = maybeDeferred(handler, req)
        except ChatError as e:
            self._reply_error(request_id, e)
            return
        except Exception:
            self._reply_failure(request_id, Failure())
            return
        d.addCallbacks(
            lambda result: self.send(wire.ok(request_id, result)),
            lambda f: self._reply_failure(request_id, f),
        )
        d.addErrback(lambda f: log.failure("reply failed", f))

    def _reply_error(self, request_id: Any, e: ChatError) -> None:
        self.send(wire.error(request_id, e.code, e.message, **e.extra))

    def _reply_failure(self, request_id: Any, failure: Failure) -> None:
        e = failure.value
        if isinstance(e, ChatError):
            self._reply_error(request_id, e)
        elif isinstance(e, UnauthorizedLogin):
            code = getattr(e, "code", "auth_failed")
            extra = {}
            if code == "rate_limited":
                extra["retry_after"] = round(getattr(e, "retry_after", 1.0), 3)
            self.send(wire.error(request_id, code, str(e) or "authentication failed", **extra))
        else:
            log.failure("internal error in a request", failure)
            self.send(wire.error(request_id, "internal_error", "internal server error"))

    # -- before authentication --------------------------------------------------

    def op_ping(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "ts": iso_ms(self.factory.service.now())}

    def op_register(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        name = _field(req, "user")
        password = _field(req, "password")
        invite = req.get("invite")
        d = self.factory.accounts.register(name, password, self.address, invite=invite)
        return d.addCallback(
            lambda result: {
                "user": result["account"].name,
                "recovery_codes": result["recovery_codes"],
            }
        )

    def _login(self, credentials: Any, on_login: Callable[[Session], Any]) -> Deferred[Any]:
        if self.session is not None or self._authenticating:
            raise BadRequest("this connection is already logged in")
        self._authenticating = True

        def logged_in(result: tuple[Any, Session, Callable[[], None]]) -> Any:
            _iface, session, logout = result
            if self.closed:
                logout()
                raise NotAuthenticated("connection closed")
            self.session, self._logout = session, logout
            return maybeDeferred(on_login, session)

        def done(result: Any) -> Any:
            self._authenticating = False
            return result

        d = self.factory.portal.login(credentials, self, IChatAvatar)
        return d.addCallback(logged_in).addBoth(done)

    def _after_login(self, session: Session, result: dict[str, Any]) -> dict[str, Any]:
        """Reply first, then the offline DMs and the rooms the account is in."""
        self.factory.clock.callLater(0, self._deliver_offline, session)
        rooms = [r.name for r in self.factory.service.rooms_of(session.name)]
        operator = session.operator is not None
        return {"user": session.name, **result, "rooms": rooms, "operator": operator}

    def _deliver_offline(self, session: Session) -> None:
        if self.session is session:
            self.factory.service.deliver_offline(session).addErrback(
                lambda f: log.failure("could not deliver offline messages", f)
            )

    def op_login(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        name = _field(req, "user")
        password = _field(req, "password")
        otp = req.get("otp")
        if otp is not None and not isinstance(otp, str):
            otp = str(otp)
        device = _field(req, "device", required=False)
        if device is not None and not 0 < len(device) <= 256:
            raise BadRequest("device must be 1 to 256 characters")
        creds = PasswordCredentials(name, password, otp, self.address, device)
        accounts = self.factory.accounts

        def issue(session: Session) -> Deferred[dict[str, Any]]:
            d = accounts.issue_token(session)
            d.addCallback(
                lambda r: accounts.remember_device(session, device).addCallback(
                    lambda secret: {**r, "device": secret}
                )
            )
            return d.addCallback(lambda r: self._after_login(session, r))

        return self._login(creds, issue)

    def op_resume(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        token = _field(req, "token")
        creds = TokenCredentials(token, self.address)
        return self._login(
            creds,
            lambda session: self._after_login(
                session, self.factory.accounts.resumed(session, token)
            ),
        )

    def op_recover(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.recover(
            _field(req, "user"),
            _field(req, "code"),
            _field(req, "new_password"),
            self.address,
        )

    # -- after authentication ---------------------------------------------------

    @property
    def me(self) -> Session:
        assert self.session is not None
        return self.session

    def op_logout(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        session = self.me
        d = self.factory.accounts.logout(session)
        self._end_session()
        return d.addCallback(lambda _: {})

    def op_join(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        room = check_room_name(_field(req, "room"))
        key = _field(req, "key", required=False)
        return self.factory.service.join(self.me, room, key).addCallback(self._room_info)

    def _room_info(self, room: Room) -> dict[str, Any]:
        return {
            "room": room.name,
            "topic": room.topic,
            "members": self.factory.service.members(room),
        }

    def op_part(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        room = _field(req, "room")
        reason = _field(req, "reason", required=False)
        return self.factory.service.part(self.me, room, reason).addCallback(
            lambda _: {"room": self.factory.service.get_room(room).name}
        )

    def op_rooms(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"rooms": self.factory.service.room_list(self.me.name)}

    def op_members(self, req: dict[str, Any]) -> dict[str, Any]:
        room = self.factory.service.get_room(_field(req, "room"))
        return {"room": room.name, "members": self.factory.service.members(room)}

    def op_topic(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        room = _field(req, "room")
        topic = _field(req, "topic")
        return self.factory.service.set_topic(self.me, room, topic).addCallback(
            lambda r: {"room": r.name, "topic": r.topic}
        )

    def op_say(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        room = _field(req, "room")
        text = _field(req, "text")
        return self.factory.service.say(self.me, room, text).addCallback(
            lambda m: {"msg_id": m.id, "ts": iso_ms(m.ts)}
        )

    def op_dm(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``dm {to, text}``, ``dm {to, ciphertext, nonce?}`` (one key) or
        ``dm {to, device, envelopes}`` (sealed per device, docs/e2e.md)."""
        to = check_account_name(_field(req, "to"))
        text = _field(req, "text", required=False)
        ciphertext = _field(req, "ciphertext", required=False)
        nonce = _field(req, "nonce", required=False)
        device = _field(req, "device", required=False)
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
        room = _field(req, "room", required=False)
        with_ = _field(req, "with", required=False)
        before = _field(req, "before", int, required=False)
        after = _field(req, "after", int, required=False)
        limit = _field(req, "limit", int, required=False)
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

    def op_who(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"users": self.factory.service.who()}

    def op_whois(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        user = check_account_name(_field(req, "user"))

        def shape(info: dict[str, Any]) -> dict[str, Any]:
            if info.get("last_seen") is not None:
                info["last_seen"] = iso_ms(info["last_seen"])
            return info

        return self.factory.service.whois(user).addCallback(shape)

    def op_away(self, req: dict[str, Any]) -> dict[str, Any]:
        text = _field(req, "text", required=False)
        self.factory.service.set_away(self.me, text)
        return {"presence": "away" if text else "online"}

    def op_kick(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        room = _field(req, "room")
        user = _field(req, "user")
        reason = _field(req, "reason", required=False)
        return self.factory.service.kick(self.me, room, user, reason).addCallback(lambda _: {})

    def op_invite(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        room = _field(req, "room")
        user = _field(req, "user")
        return self.factory.service.invite(self.me, room, user).addCallback(lambda _: {})

    def op_mode(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``mode {room, set?: "+i-t", give_op?, take_op?, give_voice?, take_voice?,
        ban?, unban?, key?, limit?}``: a JSON face on the room modes (each user
        field names one account). Without changes, returns the current modes."""
        room_name = _field(req, "room")
        changes: list[tuple[str, str | None]] = []
        flags = _field(req, "set", required=False) or ""
        sign = "+"
        for ch in flags:
            if ch in "+-":
                sign = ch
            elif ch in ROOM_FLAGS:
                changes.append((sign + ch, None))
            else:
                flags_list = ", ".join(sorted(ROOM_FLAGS))
                raise BadRequest(f"set takes the flags {flags_list}, not {ch}")
        for key, change in (
            ("give_op", "+o"),
            ("take_op", "-o"),
            ("give_voice", "+v"),
            ("take_voice", "-v"),
            ("ban", "+b"),
            ("unban", "-b"),
        ):
            value = _field(req, key, required=False)
            if value is not None:
                changes.append((change, value))
        if "key" in req:
            key = req["key"]
            if key is not None and not isinstance(key, str):
                raise BadRequest("key must be a string or null")
            changes.append(("+k", key) if key else ("-k", None))
        if "limit" in req:
            limit = req["limit"]
            if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
                raise BadRequest("limit must be an integer or null")
            changes.append(("+l", str(limit)) if limit else ("-l", None))
        if "history_days" in req:  # +H: the room's retention, null for the server's
            days = req["history_days"]
            changes.append(("+H", days) if days is not None else ("-H", None))
        service = self.factory.service
        if not changes:
            room = service.get_room(room_name)
            letters, args = room.mode_string(show_key=room.is_op(self.me.name))
            return succeed({
                "room": room.name, "modes": letters, "args": args, "bans": list(room.bans),
                "history_days": room.history_days,
            })
        return service.change_modes(self.me, room_name, changes).addCallback(
            lambda applied: {
                "room": service.get_room(room_name).name,
                "applied": [[c, a] for c, a in applied],
            }
        )

    def op_message_delete(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``message.delete {msg_id, reason?}``: the author, the room's operators or a
        server operator delete a message; everyone who could see it gets ``deleted``."""
        msg_id = _field(req, "msg_id", int)
        reason = _field(req, "reason", required=False)
        d = self.factory.service.moderation.delete_message(self.me, msg_id, reason)
        return d.addCallback(lambda _: {})

    def op_kill(self, req: dict[str, Any]) -> dict[str, Any]:
        """``kill {user, reason?}``: a server operator closes every session of *user*."""
        user = check_account_name(_field(req, "user"))
        reason = _field(req, "reason", required=False)
        n = self.factory.service.moderation.kill(self.me, user, reason)
        return {"user": user, "sessions": n}

    def op_passwd(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        old = _field(req, "old")
        new = _field(req, "new")
        return self.factory.accounts.change_password(self.me, old, new).addCallback(lambda _: {})

    def op_otp_setup(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.otp_setup(self.me)

    def op_otp_enable(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.otp_enable(self.me, _field(req, "code"))

    def op_otp_disable(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.otp_disable(
            self.me, _field(req, "password"), _field(req, "code")
        )

    def op_account_delete(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``account.delete {password, otp?}``: reply, then this connection's session ends."""
        d = self.factory.accounts.delete_account(self.me, _field(req, "password"), req.get("otp"))

        def deleted(result: dict[str, Any]) -> dict[str, Any]:
            self.factory.clock.callLater(0, self.disconnect, "your account has been deleted")
            keys = ("user", "messages", "removed", "anonymised")
            return {k: result[k] for k in keys}

        return d.addCallback(deleted)

    def op_recovery_regenerate(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        d = self.factory.accounts.regenerate_recovery_codes(self.me, _field(req, "password"))
        return d.addCallback(lambda codes: {"recovery_codes": codes})

    def op_contacts(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.contacts(self.me)

    def op_contact_add(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.contact_add(self.me, _field(req, "user"))

    def op_contact_remove(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.contact_remove(self.me, _field(req, "user"))

    def op_settings(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``settings {dm_policy?}``: read or change per-account settings."""
        policy = _field(req, "dm_policy", required=False)
        if policy is None:
            d = self.factory.accounts.account_settings(self.me)
        else:
            d = self.factory.accounts.set_dm_policy(self.me, policy)
        return d.addCallback(lambda a: {"dm_policy": a.dm_policy})

    def op_key_publish(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``key.publish {public_key, device?, label?}`` -> ``device``, ``fingerprint``."""
        device = _field(req, "device", required=False)
        if device is not None:
            device = check_device_id(device)
        label = check_device_label(req.get("label"))
        return self.factory.accounts.publish_key(
            self.me, _field(req, "public_key"), device, label
        )

    def op_key_revoke(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``key.revoke {device}``: remove one of the caller's own device keys."""
        device = check_device_id(_field(req, "device"), legacy=True)
        return self.factory.accounts.revoke_key(self.me, device)

    def op_key_get(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.get_key(_field(req, "user"))

    # -- IChatMind ----------------------------------------------------------------

    def contact_event(self, user: str, status: str) -> None:
        self.send(wire.event("contact", user=user, status=status))

    def message(self, message: Message, offline: bool = False) -> None:
        if message.kind == "tagmsg":  # IRC client tags without text: nothing to show here
            return
        if offline:
            self.send({"event": "message", **message.to_event(offline)})
        else:
            self.write_bounded(self.factory.message_line(message))

    def joined(self, room: str, user: str) -> None:
        self.send_line(self.factory.event_line("joined", room=room, user=user))

    def parted(self, room: str, user: str, reason: str | None) -> None:
        self.send_line(self.factory.event_line("parted", room=room, user=user, reason=reason))

    def kicked(self, room: str, user: str, by: str, reason: str | None) -> None:
        self.send_line(
            self.factory.event_line("kicked", room=room, user=user, by=by, reason=reason)
        )

    def topic_changed(self, room: str, topic: str, by: str) -> None:
        self.send_line(self.factory.event_line("topic", room=room, topic=topic, by=by))

    def presence_changed(self, user: str, presence: str, away: str | None) -> None:
        self.send_line(
            self.factory.event_line("presence", user=user, presence=presence, away=away)
        )

    def modes_changed(self, room: str, by: str, changes: list[tuple[str, str | None]]) -> None:
        self.send(wire.event("mode", room=room, by=by, changes=[[c, a] for c, a in changes]))

    def invited(self, room: str, by: str) -> None:
        self.send(wire.event("invited", room=room, by=by))

    def key_changed(self, user: str, device: str, action: str, fingerprint: str) -> None:
        self.send(
            wire.event("key", user=user, device=device, action=action, fingerprint=fingerprint)
        )

    def notice(self, text: str, sender: str) -> None:
        self.send(wire.event("notice", text=text, **{"from": sender}))

    def message_deleted(self, message: Message, by: str, reason: str | None) -> None:
        fields = message.to_event()
        del fields["deleted"]
        self.send(wire.event("deleted", **fields, by=by, reason=reason))

    def wallops(self, text: str, sender: str) -> None:
        if self.session is not None and self.session.operator is not None:
            self.send(wire.event("notice", text=text, wallops=True, **{"from": sender}))

    def disconnect(self, reason: str) -> None:
        self.send(wire.event("disconnect", reason=reason))
        self._end_session()
        self.lose_connection()

