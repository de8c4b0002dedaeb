"""The client itself: account flows, commands, events and E2E DMs, for any front end.

:class:`ChatClient` sits between a :class:`~pingchat.client.connection.Connector`
(the server) and a :class:`Frontend` (the full-screen UI or ``--plain``): it
turns server events into lines of windows, input lines into requests, and
asks the front end when it needs an answer (trust, user name, password,
TOTP code). It never draws anything itself.
"""

from __future__ import annotations

import contextlib
import inspect
import io
from collections.abc import Callable, Coroutine
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredLock,
    gatherResults,
    succeed,
)
from twisted.internet.error import ConnectionLost
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from pingchat import __version__
from pingchat.chat.model import fold
from pingchat.client import commands
from pingchat.client.commands import Command, CommandError
from pingchat.client.configdir import ConfigDir, ServerAddress, SessionStore
from pingchat.client.connection import ClientProtocol, Connector, NotConnected, RequestFailed
from pingchat.client.e2e import Identity, PeerKeys, load_or_create_device_id
from pingchat.client.keyring import CANNOT_DECRYPT, OTHER_DEVICES, KeyRing, Opened
from pingchat.client.trust import TrustPolicy
from pingchat.client.view import ChatWindow, Line, Windows, local_time, message_line, who
from pingchat.native.wire import MAX_LINE, encode

log = Logger()

LOCAL_COMMANDS = frozenset({"help", "clear", "quit", "query", "reconnect", "close"})
HISTORY_ON_JOIN = 20


class Frontend(TypingProtocol):
    """What the client needs from whatever draws it."""

    def show(self, window: ChatWindow, line: Line) -> None:
        """A line was added to *window*."""

    def ask(self, question: str, secret: bool = False) -> Deferred[str]:
        """Ask the user; fire with the answer (or fail with CancelledError)."""
        ...

    def cancel_questions(self) -> None:
        """Drop unanswered questions (the connection they were for is gone)."""

    def refresh(self) -> None:
        """Something besides lines changed: status, windows, the current window."""

    def stop(self) -> None:
        """The client is done: stop taking input and end the program."""


def qr_lines(data: str) -> list[str]:
    """*data* as a QR code in text: two modules per character cell, light modules
    drawn, so it scans on the usual light-on-dark terminal."""
    import qrcode

    qr = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
    qr.add_data(data)
    qr.make(fit=True)
    matrix: list[list[bool]] = qr.get_matrix()
    if len(matrix) % 2:
        matrix.append([False] * len(matrix[0]))
    glyphs = {(False, False): "█", (False, True): "▀", (True, False): "▄", (True, True): " "}
    out = io.StringIO()
    for top, bottom in zip(matrix[::2], matrix[1::2], strict=True):
        out.write("".join(glyphs[(t, b)] for t, b in zip(top, bottom, strict=True)) + "\n")
    return out.getvalue().rstrip("\n").split("\n")


def _yes(answer: str) -> bool | None:
    answer = answer.strip().lower()
    if answer in ("y", "yes"):
        return True
    if answer in ("n", "no"):
        return False
    return None


class ChatClient:
    """The client's state and behaviour; see the module docstring."""

    def __init__(
        self,
        reactor: Any,
        server: ServerAddress,
        config: ConfigDir,
        trust: TrustPolicy,
        user_hint: str | None = None,
        connector: Connector | None = None,
    ) -> None:
        self.reactor = reactor
        self.server = server
        self.config = config
        self.user_hint = user_hint
        self.frontend: Frontend | None = None
        self.connector = connector or Connector(reactor, server, trust, self)
        self.windows = Windows(str(server))
        self.sessions = SessionStore(config, server)
        self.user: str | None = None
        self.proto: ClientProtocol | None = None  # set while logged in
        self.identity: Identity | None = None
        self.keyring: KeyRing | None = None  # set at login, unless E2E is off
        self._keys_proto: ClientProtocol | None = None
        self.server_name: str | None = None
        self.state = "offline"
        self.state_detail = ""
        self.exit_code = 0
        self.fatal: str | None = None
        self.logged_in_once = False
        self._incoming = DeferredLock()
        self._outgoing = DeferredLock()
        self._queued: list[str] = []
        self._busy: set[Deferred[Any]] = set()
        self._input_closed = False
        self._stopped = False

    # -- life cycle -------------------------------------------------------------

    def start(self, frontend: Frontend) -> None:
        self.frontend = frontend
        self.info(f"pingchat {__version__}: connecting to {self.server} …  (/help for help,"
                  " /quit to leave)")
        self.connector.start()

    def quit(self, code: int | None = None) -> None:
        if code is not None:
            self.exit_code = code
        if self._stopped:
            return
        self._stopped = True
        self.connector.stop()
        if self.frontend is not None:
            self.frontend.cancel_questions()
            self.frontend.stop()

    def input_closed(self) -> None:
        """Standard input ended (``--plain``): finish what was asked, then quit."""
        self._input_closed = True
        if self.frontend is not None:
            self.frontend.cancel_questions()
        if not self.logged_in_once:
            if not self.fatal:
                self.fatal = "standard input ended before the client logged in"
            self.quit(1)
            return
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self._input_closed and not self._busy and not self._queued:
            self.quit()

    # -- output helpers ------------------------------------------------------------

    def add(self, window: ChatWindow, line: Line, notify: bool = False) -> None:
        window.lines.append(line)
        if notify and window is not self.windows.current:
            window.unread += 1
            if window.kind == "dm" or (self.user and self.user.lower() in line.text.lower()):
                window.alert = True
                if window.kind == "dm" and line.kind in ("message", "notice"):
                    self._elsewhere(window, line)
        if self.frontend is not None:
            self.frontend.show(window, line)
            self.frontend.refresh()

    def _elsewhere(self, window: ChatWindow, line: Line) -> None:
        n = self.windows.number(window)
        mark = "[e2e] " if line.encrypted else ""
        pointer = Line(f"[{window.title}, window {n}] {who(line)} {mark}{line.text}",
                       "elsewhere", ts=line.ts, echo=True)
        self.windows.current.lines.append(pointer)
        if self.frontend is not None:
            self.frontend.show(self.windows.current, pointer)

    def _here(self) -> ChatWindow:
        return self.windows.current

    def info(self, text: str, window: ChatWindow | None = None, echo: bool = False) -> None:
        self.add(window or self._here(), Line(text, "info", echo=echo))

    def error(self, text: str, window: ChatWindow | None = None) -> None:
        self.add(window or self._here(), Line(text, "error"))

    def warning(self, text: str, window: ChatWindow | None = None, echo: bool = False) -> None:
        self.add(window or self._here(), Line(text, "warning", echo=echo))

    def _refresh(self) -> None:
        if self.frontend is not None:
            self.frontend.refresh()

    async def ask(self, question: str, secret: bool = False) -> str:
        assert self.frontend is not None
        self.add(self._here(), Line(question, "prompt"))
        answer = await self.frontend.ask(question, secret)
        if not secret and answer.strip().lower() in ("/quit", "/exit"):
            self.quit()
            raise CancelledError("the user quit")
        return answer

    async def ask_yes_no(self, question: str) -> bool:
        while True:
            answer = _yes(await self.ask(question))
            if answer is not None:
                return answer
            self.error("please answer yes or no")

    def _run(self, coro: Coroutine[Deferred[Any], Any, Any]) -> Deferred[Any]:
        d = Deferred.fromCoroutine(coro)
        self._busy.add(d)

        def done(result: Any) -> Any:
            self._busy.discard(d)
            self._maybe_finish()
            return result

        return d.addBoth(done)

    # -- ConnectorClient ------------------------------------------------------------

    def ask_trust(self, question: str) -> Deferred[bool]:
        return Deferred.fromCoroutine(self.ask_yes_no(question))

    def trusted(self, note: str, first: bool) -> None:
        if first:
            self.info(note, self.windows.status)

    def state_changed(self, state: str, detail: str) -> None:
        self.state, self.state_detail = state, detail
        if state in ("waiting", "offline") and detail:
            self.warning(detail)
        if state in ("waiting", "offline", "failed", "refused"):
            self.proto = None
            if self.frontend is not None:
                self.frontend.cancel_questions()
        if state == "failed":
            self.fatal = detail
            self.error(detail, self.windows.status)
            self.quit(1)
            return
        if state == "error":
            self.error(detail)
        self._refresh()

    def refused(self, message: str) -> None:
        self.fatal = message
        self.warning(message, self.windows.status)
        if self.windows.current is not self.windows.status:
            self.warning(message, echo=True)
        self.quit(1)

    def session_started(self, proto: ClientProtocol) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._authenticate(proto))

    def event(self, proto: ClientProtocol, event: dict[str, Any]) -> None:
        def handle() -> Deferred[Any]:
            name = str(event.get("event", "")).replace(".", "_")
            handler: Callable[[dict[str, Any]], Any] | None = getattr(self, "ev_" + name, None)
            if handler is None:
                return succeed(None)
            result = handler(event)
            if inspect.iscoroutine(result):
                return Deferred.fromCoroutine(result)
            return succeed(result)

        self._incoming.run(handle).addErrback(
            lambda f: log.failure("could not show an event", f)
        )

    # -- logging in -----------------------------------------------------------------

    async def _authenticate(self, proto: ClientProtocol) -> None:
        saved = self.sessions.load()
        if saved and (self.user_hint is None or fold(saved[0]) == fold(self.user_hint)):
            user, token = saved
            try:
                reply = await proto.request("resume", token=token)
            except RequestFailed as e:
                if e.code not in ("auth_failed", "account_disabled", "bad_request"):
                    raise
                self.sessions.forget()
                self.warning(f"the saved session of {user} ended ({e.message}); please log"
                             " in again", self.windows.status)
            else:
                await self._logged_in(proto, reply, resumed=True)
                return
        await self._account_menu(proto)

    async def _account_menu(self, proto: ClientProtocol) -> None:
        status = self.windows.status
        self.windows.switch(status)
        if self.user_hint:
            while not await self._login_flow(proto, self.user_hint):
                pass
            return
        while True:
            choice = await self.ask(
                "Type  login  if you have an account on this server,  register  to create"
                " one, or  recover  to reset a forgotten password with a recovery code."
            )
            choice = choice.strip().lower().lstrip("/")
            if choice in ("login", "l", "log in"):
                done = await self._login_flow(proto, None)
            elif choice in ("register", "r", "reg"):
                done = await self._register_flow(proto)
            elif choice in ("recover", "reset"):
                done = await self._recover_flow(proto)
            else:
                self.error("please type login, register or recover (or /quit)")
                continue
            if done:
                return

    async def _ask_name(self, question: str) -> str:
        while True:
            name = (await self.ask(question)).strip()
            if name:
                return name

    async def _new_password(self, what: str = "Choose a password") -> str:
        while True:
            password = await self.ask(f"{what} (at least 8 characters):", secret=True)
            if not password:
                continue
            again = await self.ask("Type it again:", secret=True)
            if password == again:
                return password
            self.error("the two passwords differ; once more")

    async def _login_flow(self, proto: ClientProtocol, name: str | None) -> bool:
        if name is None:
            name = await self._ask_name("User name:")
        password = await self.ask(f"Password for {name}:", secret=True)
        otp: str | None = None
        while True:
            try:
                reply = await self._password_login(proto, name, password, otp)
            except RequestFailed as e:
                if e.code == "otp_required" and otp is None:
                    otp = (await self.ask(
                        "This account has two-factor authentication: the 6-digit code from"
                        " your authenticator app:")).strip().replace(" ", "")
                    continue
                await self._auth_error(e)
                return False
            await self._logged_in(proto, reply)
            return True

    async def _password_login(self, proto: ClientProtocol, name: str, password: str,
                              otp: str | None = None) -> dict[str, Any]:
        """``login``, with this account's device secret from an earlier login
        (the server lets a known device in even while it holds the account
        back from wide password guessing), keeping the one the reply gives."""
        args: dict[str, Any] = {"user": name, "password": password}
        if otp is not None:
            args["otp"] = otp
        device = self.sessions.device(name)
        if device is not None:
            args["device"] = device
        reply = await proto.request("login", **args)
        if isinstance(reply.get("device"), str):
            self.sessions.save_device(str(reply.get("user", name)), reply["device"])
        return reply

    async def _auth_error(self, e: RequestFailed) -> None:
        if e.code == "rate_limited":
            wait = max(1.0, e.retry_after)
            self.error(f"{e.message} (waiting {wait:.0f}s)")
            await deferLater(self.reactor, wait)
        elif e.code in ("auth_failed", "account_disabled", "user_exists", "invalid_name",
                        "weak_password", "bad_request", "otp_required"):
            self.error(e.message)
        else:
            raise e

    async def _register_flow(self, proto: ClientProtocol) -> bool:
        name = await self._ask_name(
            "Choose a user name (a letter or _ first, then letters, digits, _ - [ ] { } |"
            " ^ `; at most 32):")
        password = await self._new_password()
        try:
            reply = await proto.request("register", user=name, password=password)
        except RequestFailed as e:
            await self._auth_error(e)
            return False
        name = reply["user"]
        codes = [str(c) for c in reply.get("recovery_codes", [])]
        await self._show_recovery_codes(
            f"Account {name} created. These are your recovery codes:", codes)
        try:
            login = await self._password_login(proto, name, password)
        except RequestFailed as e:
            await self._auth_error(e)
            return False
        await self._logged_in(proto, login)
        return True

    async def _show_recovery_codes(self, heading: str, codes: list[str]) -> None:
        window = self.windows.current
        lines = [Line(heading, "warning")]
        lines += [Line(f"    {code}", "info") for code in codes]
        lines.append(Line(
            "Each code resets your password once if you forget it. They are shown only"
            " now: store them in your password manager or on paper, away from this"
            " computer.", "warning"))
        for line in lines:
            self.add(window, line)
        while (await self.ask("Type  stored  once you have stored them:")).strip().lower() \
                not in ("stored", "yes", "y", "ok", "done"):
            pass
        for line in lines[1:-1]:
            line.text = "    ****-****-****-****"
        self.info("(the codes are hidden now)", window)

    async def _recover_flow(self, proto: ClientProtocol) -> bool:
        name = await self._ask_name("User name:")
        code = (await self.ask("One of your recovery codes:", secret=True)).strip()
        password = await self._new_password("Choose a new password")
        try:
            reply = await proto.request("recover", user=name, code=code, new_password=password)
        except RequestFailed as e:
            await self._auth_error(e)
            return False
        left = reply.get("recovery_codes_left")
        self.info(f"The password of {reply.get('user', name)} is reset; every old session"
                  f" was logged out. Recovery codes left: {left}.")
        try:
            login = await self._password_login(proto, reply.get("user", name), password)
        except RequestFailed as e:
            await self._auth_error(e)
            return False
        await self._logged_in(proto, login)
        return True

    async def _logged_in(self, proto: ClientProtocol, reply: dict[str, Any],
                         resumed: bool = False) -> None:
        user = str(reply["user"])
        again = resumed and self.user is not None and fold(self.user) == fold(user)
        self.user = user
        self.sessions.save(user, str(reply["token"]))
        self._keys_proto = proto
        self._load_identity(user)
        # self.proto is set last: until then, input waits (front ends redraw,
        # and the plain one feeds input, whenever a line is added below).
        if again:
            self.info("reconnected; session resumed", self.windows.status)
            if self.windows.current is not self.windows.status:
                self.info("reconnected", echo=True)
        else:
            self.info(f"Logged in as {user} on {self.server_name or self.server}.",
                      self.windows.status)
        rooms = [str(r) for r in reply.get("rooms", [])]
        for name in rooms:
            window = self.windows.open("room", name)
            window.joined = True
            self._run(self._catch_up(proto, window))
        if rooms:
            self._run(self._fetch_topics(proto))
        if not again and not self.logged_in_once:
            if rooms:
                self.windows.switch(self.windows.find(rooms[0]) or self.windows.status)
                self.info("You are in " + ", ".join(rooms) + ". /query #room or Ctrl-N"
                          " switches windows; /help lists every command.",
                          self.windows.status)
            else:
                self.info("Next: /rooms lists the rooms, /join #room joins one (or creates"
                          " it), /msg user text sends a direct message, /help shows all"
                          " commands.", self.windows.status)
        self.logged_in_once = True
        self._run(self._publish_key(proto))
        self.proto = proto
        self._refresh()
        queued, self._queued = self._queued, []
        for line in queued:
            self.input(line)
        self._maybe_finish()

    async def _fetch_topics(self, proto: ClientProtocol) -> None:
        try:
            reply = await proto.request("rooms")
        except (RequestFailed, NotConnected, ConnectionLost):
            return
        for r in reply.get("rooms", []):
            window = self.windows.find(str(r.get("name")))
            if window is not None:
                window.topic = r.get("topic")
        self._refresh()

    def _load_identity(self, user: str) -> None:
        """This device's key pair and device id for *user* (made the first time)."""
        folder = self.config.server_dir(self.server)
        keys = folder / "keys"
        try:
            self.identity = Identity.load_or_create(keys / f"{user.lower()}.key")
            device = load_or_create_device_id(keys / f"{user.lower()}.device")
        except (OSError, ValueError) as e:
            self.identity, self.keyring = None, None
            self.warning(f"end-to-end encryption is off: {e}")
            return
        peers = PeerKeys(self.config, folder / f"peer-keys-{user.lower()}.json")
        self.keyring = KeyRing(user, self.identity, device, peers, self._key_request,
                               self._key_note)

    def _key_request(self, op: str, **args: Any) -> Deferred[dict[str, Any]]:
        proto = self.proto or self._keys_proto
        if proto is None:
            raise NotConnected("not connected")
        return proto.request(op, **args)

    def _key_note(self, user: str, level: str, text: str) -> None:
        """What the key ring noticed about *user*'s keys: in their DM window
        (in the server window for this account's own devices)."""
        if self.user is not None and fold(user) == fold(self.user):
            window = self.windows.status
        else:
            window = self.windows.find(user) or self.windows.open("dm", user)
        if level == "warning":
            self.warning(text, window)
            if window is not self.windows.current:
                self.warning(text, echo=True)
        else:
            self.info(text, window)

    async def _publish_key(self, proto: ClientProtocol) -> None:
        if self.keyring is None:
            return
        try:
            note = await self.keyring.publish()
        except RequestFailed as e:
            hint = " (/keys lists your devices, /revoke DEVICE removes one)" if (
                e.code == "too_many_devices") else ""
            self.warning(f"could not publish your encryption key: {e.message}{hint}",
                         self.windows.status)
        except (NotConnected, ConnectionLost) as e:
            self.warning(f"could not publish your encryption key: {e}", self.windows.status)
        else:
            if note is not None:
                self.info(note, self.windows.status)

    async def _catch_up(self, proto: ClientProtocol, window: ChatWindow,
                        limit: int = HISTORY_ON_JOIN) -> None:
        """Show what was said in a room while this client was away (or, the first
        time, its last few messages)."""
        since = window.last_msg_id
        try:
            members = await proto.request("members", room=window.title)
            window.members = {fold(str(m["user"])): dict(m)
                              for m in members.get("members", [])}
            reply = await proto.request("history", room=window.title,
                                        limit=50 if since else limit)
        except (RequestFailed, NotConnected, ConnectionLost):
            return
        messages = reply.get("messages", [])
        if not since and not window.lines:
            topic = f"; topic: {window.topic}" if window.topic else ""
            self.add(window, Line(self._members_text(window) + topic, "event"))
        await self._incoming.run(
            lambda: Deferred.fromCoroutine(self._show_history(window, messages, since)))

    async def _show_history(self, window: ChatWindow, messages: list[dict[str, Any]],
                            since: int) -> None:
        if since:
            # Back after a drop: only what was said meanwhile.
            messages = [m for m in messages if int(m.get("msg_id", 0)) > since]
        fresh = [m for m in messages if int(m.get("msg_id", 0)) not in window.seen]
        for m in fresh:
            await self._show_message(m, window=window, history=True)

    # -- events -----------------------------------------------------------------------

    def ev_hello(self, event: dict[str, Any]) -> None:
        self.server_name = str(event.get("server") or self.server)

    async def ev_message(self, event: dict[str, Any]) -> None:
        await self._show_message(event)

    async def _show_message(self, m: dict[str, Any], window: ChatWindow | None = None,
                            history: bool = False) -> None:
        sender = str(m.get("from", "?"))
        mine = self.user is not None and fold(sender) == fold(self.user)
        if window is None:
            if m.get("room"):
                window = self.windows.open("room", str(m["room"]))
            else:
                peer = str(m.get("to") if mine else sender)
                window = self.windows.open("dm", peer)
        msg_id = m.get("msg_id")
        if isinstance(msg_id, int) and not window.mark_seen(msg_id) and not history:
            return
        kind = "notice" if m.get("kind") == "notice" else ("own" if mine else "message")
        encrypted = False
        text = m.get("text")
        if m.get("ciphertext") is not None or m.get("envelopes") is not None:
            opened = Opened(None, "[an encrypted message: end-to-end encryption is off on"
                                  " this device]")
            if self.keyring is not None:
                try:
                    opened = await self.keyring.open(m)
                except (RequestFailed, NotConnected, ConnectionLost):
                    opened = Opened(None, CANNOT_DECRYPT)
            if opened.text is not None:
                text, encrypted = opened.text, True
            else:
                text = opened.note
                if not mine and opened.note != OTHER_DEVICES:
                    kind = "warning"
        history = history or bool(m.get("offline"))
        line = message_line(str(text or ""), kind, sender=sender, ts=m.get("ts"),
                            encrypted=encrypted, history=history)
        if kind == "warning":
            line.text = f"<{sender}> {text}"
        self.add(window, line, notify=not mine)

    def ev_joined(self, event: dict[str, Any]) -> None:
        room, user = str(event.get("room")), str(event.get("user"))
        window = self.windows.find(room)
        if self.user and fold(user) == fold(self.user):
            # Our own join: /join tells; from another session, the window just appears.
            window = self.windows.open("room", room)
            window.joined = True
            return
        if window is None:
            return
        window.members.setdefault(fold(user), {"user": user, "presence": "online"})
        self.add(window, Line(f"{user} joined {room}", "event"))

    def ev_parted(self, event: dict[str, Any]) -> None:
        room, user = str(event.get("room")), str(event.get("user"))
        window = self.windows.find(room)
        if window is None:
            return
        window.members.pop(fold(user), None)
        reason = f" ({event['reason']})" if event.get("reason") else ""
        if self.user and fold(user) == fold(self.user):
            window.joined = False
        self.add(window, Line(f"{user} left {room}{reason}", "event"))

    def ev_kicked(self, event: dict[str, Any]) -> None:
        room, user, by = str(event.get("room")), str(event.get("user")), event.get("by")
        reason = f" ({event['reason']})" if event.get("reason") else ""
        window = self.windows.find(room)
        me = self.user is not None and fold(user) == fold(self.user)
        if window is not None:
            window.members.pop(fold(user), None)
            if me:
                window.joined = False
            self.add(window, Line(f"{user} was removed from {room} by {by}{reason}",
                                  "warning" if me else "event"), notify=me)
        if me and window is not self.windows.current:
            self.warning(f"{by} removed you from {room}{reason}", echo=window is not None)

    def ev_topic(self, event: dict[str, Any]) -> None:
        room = str(event.get("room"))
        window = self.windows.find(room)
        if window is None:
            return
        window.topic = event.get("topic")
        self.add(window, Line(f"{event.get('by')} set the topic: {event.get('topic')}",
                              "event"))

    def ev_presence(self, event: dict[str, Any]) -> None:
        user, presence, away = str(event.get("user")), event.get("presence"), event.get("away")
        for w in self.windows.items:
            if fold(user) in w.members:
                w.members[fold(user)]["presence"] = presence
        window = self.windows.find(user)
        if window is None or window.kind != "dm":
            self._refresh()
            return
        if presence == "away":
            text = f"{user} is away: {away}" if away else f"{user} is away"
        else:
            text = f"{user} is {presence}"
        self.add(window, Line(text, "event"))

    def ev_mode(self, event: dict[str, Any]) -> None:
        room = str(event.get("room"))
        window = self.windows.find(room)
        if window is None:
            return
        changes = " ".join(
            f"{c} {a}" if a else str(c) for c, a in event.get("changes") or []
        )
        self.add(window, Line(f"{event.get('by')} set mode {changes} on {room}", "event"))

    def ev_invited(self, event: dict[str, Any]) -> None:
        room = event.get("room")
        self.add(self._here(), Line(f"{event.get('by')} invites you to {room}: /join {room}",
                                    "warning"))

    def ev_contact(self, event: dict[str, Any]) -> None:
        user, status = event.get("user"), event.get("status")
        texts = {
            "request": f"{user} asks to be your contact: /add {user} accepts",
            "accepted": f"{user} and you are contacts now",
            "removed": f"{user} is no longer your contact",
        }
        self.add(self._here(), Line(texts.get(str(status), f"{user}: contact {status}"),
                                    "warning" if status == "request" else "info"))

    async def ev_key(self, event: dict[str, Any]) -> None:
        """A device key of this account, a contact or a DM partner changed:
        refetch it (trust on first use then says what is new or changed)."""
        user = str(event.get("user", ""))
        if self.keyring is None or not user:
            return
        self.keyring.forget(user)
        if event.get("action") == "revoked":
            if self.keyring.is_me(user):
                self.info(f"the key of your device {event.get('device')} was removed",
                          self.windows.status)
            return
        if self.keyring.knows(user):
            with contextlib.suppress(RequestFailed, NotConnected, ConnectionLost):
                await self.keyring.keys_of(user, fresh=True)

    def ev_notice(self, event: dict[str, Any]) -> None:
        self.add(self._here(), Line(str(event.get("text", "")), "notice",
                                    sender=str(event.get("from", "server"))))

    def ev_disconnect(self, event: dict[str, Any]) -> None:
        # Whatever the reason (a restart, an administrator), come back with
        # back-off: a session that may not continue fails to resume.
        self.warning(f"the server ended this session: {event.get('reason')}")

    def ev_error(self, event: dict[str, Any]) -> None:
        error = event.get("error") or {}
        self.error(f"server: {error.get('message', 'error')}")

    # -- input ----------------------------------------------------------------------------

    @property
    def waiting_to_start(self) -> bool:
        """Not logged in yet, or reconnecting: commands would have to wait."""
        return self.proto is None and self.state not in ("failed", "refused", "offline")

    def input(self, text: str) -> Deferred[None]:
        """Lines the user typed (not answers to questions); fires when they are done."""
        done: list[Deferred[None]] = []
        for line in text.replace("\r", "").split("\n"):
            if line.strip():
                done.append(self._input_line(line))
        return gatherResults(done).addCallback(lambda _: None)

    def _input_line(self, line: str) -> Deferred[None]:
        try:
            cmd = commands.parse(line)
        except CommandError as e:
            self.error(str(e))
            return succeed(None)
        if cmd.name not in LOCAL_COMMANDS and self.proto is None:
            if not self.logged_in_once and self.waiting_to_start:
                self._queued.append(line)
                return succeed(None)
            self.error(f"not connected ({self.state_detail or self.state}); /reconnect tries"
                       " again now")
            return succeed(None)
        handler = getattr(self, "cmd_" + cmd.name)
        return self._run(handler(cmd)).addErrback(self._command_failed, cmd)

    def _command_failed(self, failure: Failure, cmd: Command) -> None:
        e = failure.value
        if isinstance(e, RequestFailed):
            self.error(e.message)
        elif isinstance(e, (NotConnected, ConnectionLost)):
            self.error(f"/{cmd.name} did not go through: the connection dropped")
        elif isinstance(e, CommandError):
            self.error(str(e))
        elif isinstance(e, CancelledError):
            pass
        else:
            log.failure("command {cmd} failed", failure, cmd=cmd.name)
            self.error(f"/{cmd.name} failed: {e}")

    def _need_proto(self) -> ClientProtocol:
        if self.proto is None:
            raise NotConnected("not connected")
        return self.proto

    def _room_arg(self, cmd: Command) -> str:
        room = cmd.get("room")
        if room:
            return room
        if self._here().kind == "room":
            return self._here().title
        spec = commands.spec(cmd.name)
        raise CommandError("which room? This is not a room window"
                           + (f"; usage: {spec.usage}" if spec else ""))

    async def cmd_help(self, cmd: Command) -> None:
        try:
            lines = commands.help_lines(cmd.get("topic"))
        except CommandError as e:
            self.error(str(e))
            return
        for line in lines:
            self.info(line)

    async def cmd_clear(self, cmd: Command) -> None:
        self._here().lines.clear()
        self._refresh()

    async def cmd_quit(self, cmd: Command) -> None:
        self.quit()

    async def cmd_reconnect(self, cmd: Command) -> None:
        self.info(f"connecting to {self.server} again")
        self.connector.reconnect_now()

    async def cmd_query(self, cmd: Command) -> None:
        target = cmd.args["target"]
        if target.isdigit():
            window = self.windows.by_number(int(target))
            if window is None:
                self.error(f"there is no window {target}")
                return
        elif target.startswith("#"):
            found = self.windows.find(target)
            if found is None:
                self.error(f"you are not in {target}: /join {target}")
                return
            window = found
        else:
            window = self.windows.open("dm", target)
        self.windows.switch(window)
        self._refresh()

    async def cmd_close(self, cmd: Command) -> None:
        window = self._here()
        if window.kind == "status":
            self.error("the server window stays open (/quit leaves the client)")
            return
        if window.kind == "room" and window.joined and self.proto is not None:
            await self.proto.request("part", room=window.title)
        self.windows.close(window)
        self._refresh()

    async def cmd_me(self, cmd: Command) -> None:
        await self.cmd_say(Command("say", {"text": f"\x01ACTION {cmd.args['text']}\x01"}))

    async def cmd_say(self, cmd: Command) -> None:
        window = self._here()
        text = cmd.args["text"]
        if window.kind == "room":
            await self._say(window.title, text)
        elif window.kind == "dm":
            await self._dm(window.title, text)
        else:
            self.error("This is the server window: /join #room to talk in a room, or"
                       " /msg user text for a direct message.")

    async def _say(self, room: str, text: str) -> None:
        proto = self._need_proto()
        reply = await self._outgoing.run(proto.request, "say", room=room, text=text)
        window = self.windows.find(room) or self.windows.open("room", room)
        line = message_line(text, "own", sender=self.user, ts=reply.get("ts"))
        if isinstance(reply.get("msg_id"), int):
            window.mark_seen(reply["msg_id"])
        self.add(window, line)
        if window is not self._here():
            self.add(self._here(), Line(f"[{room}] {who(line)} {line.text}", "elsewhere",
                                        echo=True))

    async def _dm(self, to: str, text: str) -> None:
        await self._outgoing.run(lambda: Deferred.fromCoroutine(self._send_dm(to, text)))

    async def _send_dm(self, to: str, text: str) -> None:
        proto = self._need_proto()
        sealed = await self.keyring.seal(to, text) if self.keyring is not None else None
        if sealed is not None:
            name, fields = sealed
            window = self.windows.open("dm", name)
            request = {"op": "dm", "to": name, **fields}
            if len(encode(request)) + 24 > MAX_LINE:  # + the request's id
                devices = len(fields.get("envelopes", [1]))
                raise CommandError(
                    f"this message is too long to seal for {devices} device(s) in one request;"
                    " send it in shorter pieces")
            reply = await proto.request("dm", to=name, **fields)
            window.encrypted = True
        else:
            name = to if self.keyring is None else (await self.keyring.keys_of(to)).user
            window = self.windows.open("dm", name)
            reply = await proto.request("dm", to=name, text=text)
            window.encrypted = False
            if not window.warned_plain:
                window.warned_plain = True
                warning = (f"{name} has not published an encryption key (they may use IRC"
                           " or another client), so this conversation is NOT end-to-end"
                           " encrypted: the server can read it.")
                self.warning(warning, window)
                if window is not self._here():
                    self.warning(warning, echo=True)
        if isinstance(reply.get("msg_id"), int):
            window.mark_seen(reply["msg_id"])
        line = message_line(text, "own", sender=self.user, ts=reply.get("ts"),
                            encrypted=bool(window.encrypted))
        self.add(window, line)
        if window is not self._here():
            mark = "[e2e] " if window.encrypted else ""
            self.add(self._here(), Line(f"[to {name}] {who(line)} {mark}{line.text}",
                                        "elsewhere", echo=True))
        if reply.get("delivered") is False:
            self.info(f"{name} is offline: the message waits on the server until they"
                      " connect", window)

    async def cmd_msg(self, cmd: Command) -> None:
        to, text = cmd.args["to"], cmd.args["text"]
        if to.startswith("#"):
            await self._say(to, text)
        else:
            await self._dm(to, text)

    async def cmd_join(self, cmd: Command) -> None:
        proto = self._need_proto()
        args = {"room": cmd.args["room"]}
        if cmd.get("key"):
            args["key"] = cmd.args["key"]
        reply = await proto.request("join", **args)
        room = str(reply["room"])
        window = self.windows.open("room", room)
        window.joined = True
        window.topic = reply.get("topic")
        window.members = {fold(str(m["user"])): dict(m) for m in reply.get("members", [])}
        self.windows.switch(window)
        self.add(window, Line(f"you joined {room}", "event"))
        if window.topic:
            self.add(window, Line(f"topic: {window.topic}", "event"))
        self.add(window, Line(self._members_text(window), "event"))
        await self._catch_up(proto, window)

    def _members_text(self, window: ChatWindow) -> str:
        names = []
        for m in sorted(window.members.values(), key=lambda m: fold(str(m["user"]))):
            mark = "@" if m.get("op") else ("+" if m.get("voice") else "")
            state = m.get("presence")
            extra = f" ({state})" if state and state != "online" else ""
            names.append(f"{mark}{m['user']}{extra}")
        return f"in {window.title} ({len(names)}): " + ", ".join(names)

    async def cmd_part(self, cmd: Command) -> None:
        proto = self._need_proto()
        room = self._room_arg(cmd)
        args = {"room": room}
        if cmd.get("reason"):
            args["reason"] = cmd.args["reason"]
        await proto.request("part", **args)
        window = self.windows.find(room)
        if window is not None:
            self.windows.close(window)
        self.info(f"you left {room}")

    async def cmd_rooms(self, cmd: Command) -> None:
        reply = await self._need_proto().request("rooms")
        rooms = reply.get("rooms", [])
        if not rooms:
            self.info("no rooms yet: /join #name creates one")
            return
        self.info(f"{len(rooms)} room(s):")
        for r in rooms:
            topic = f"  {r.get('topic')}" if r.get("topic") else ""
            self.info(f"  {r.get('name')} ({r.get('members')} people){topic}")

    async def cmd_members(self, cmd: Command) -> None:
        room = self._room_arg(cmd)
        reply = await self._need_proto().request("members", room=room)
        window = self.windows.find(room)
        members = {fold(str(m["user"])): dict(m) for m in reply.get("members", [])}
        if window is not None:
            window.members = members
        shown = window or ChatWindow("room", str(reply.get("room", room)), members=members)
        self.info(self._members_text(shown))

    async def cmd_topic(self, cmd: Command) -> None:
        proto = self._need_proto()
        room = self._room_arg(cmd)
        topic = cmd.get("topic")
        if topic is None:
            reply = await proto.request("rooms")
            for r in reply.get("rooms", []):
                if fold(str(r.get("name"))) == fold(room):
                    self.info(f"topic of {r['name']}: {r.get('topic') or '(none)'}")
                    return
            self.error(f"no such room: {room}")
            return
        await proto.request("topic", room=room, topic=topic)
        if self.windows.find(room) is None:  # else the topic event shows it
            self.info(f"topic of {room} set")

    async def cmd_history(self, cmd: Command) -> None:
        proto = self._need_proto()
        target = cmd.get("target")
        window = self.windows.find(target) if target else self._here()
        if window is None and target:
            window = self.windows.open("room" if target.startswith("#") else "dm", target)
        assert window is not None
        if window.kind == "status":
            self.error("history of what? /history #room or /history user")
            return
        limit = int(cmd.get("limit") or 20)
        args: dict[str, Any] = {"limit": limit}
        args["room" if window.kind == "room" else "with"] = window.title
        reply = await proto.request("history", **args)
        messages = reply.get("messages", [])
        self.windows.switch(window)
        self.add(window, Line(f"--- the last {len(messages)} message(s) ---", "event"))
        for m in messages:
            await self._show_message(m, window=window, history=True)
        self.add(window, Line("--- end of history ---", "event"))

    async def cmd_kick(self, cmd: Command) -> None:
        room = self._room_arg(cmd)
        args = {"room": room, "user": cmd.args["user"]}
        if cmd.get("reason"):
            args["reason"] = cmd.args["reason"]
        await self._need_proto().request("kick", **args)

    async def cmd_invite(self, cmd: Command) -> None:
        room = self._room_arg(cmd)
        await self._need_proto().request("invite", room=room, user=cmd.args["user"])
        self.info(f"invited {cmd.args['user']} to {room}")

    async def cmd_who(self, cmd: Command) -> None:
        reply = await self._need_proto().request("who")
        users = reply.get("users", [])
        names = []
        for u in users:
            extra = ""
            if u.get("presence") == "away":
                extra = f" (away: {u['away']})" if u.get("away") else " (away)"
            names.append(f"{u.get('user')}{extra}")
        self.info(f"online ({len(names)}): " + ", ".join(names))

    async def cmd_whois(self, cmd: Command) -> None:
        proto = self._need_proto()
        info = await proto.request("whois", user=cmd.args["user"])
        user = info.get("user")
        presence = info.get("presence")
        if presence == "away" and info.get("away"):
            presence = f"away: {info['away']}"
        self.info(f"{user}: {presence}")
        if info.get("rooms"):
            self.info(f"  rooms: {', '.join(info['rooms'])}")
        if info.get("last_seen"):
            self.info(f"  last seen: {local_time(info['last_seen'], full=True)}")
        if info.get("doors"):
            self.info(f"  connected through: {', '.join(info['doors'])}")
        if self.keyring is None:
            return
        keys = await self.keyring.keys_of(cmd.args["user"], fresh=True)
        if keys.devices:
            self.info(f"  encryption keys: {len(keys.devices)} device(s); /keys {keys.user}"
                      " lists their fingerprints")
        else:
            self.info("  no encryption key: direct messages to them are not end-to-end"
                      " encrypted")

    async def cmd_keys(self, cmd: Command) -> None:
        """``/keys [user]``: every device key of *user* (default: you), with its
        fingerprint and label, and whether a changed one awaits ``/trust``."""
        ring = self.keyring
        if ring is None:
            self.error("end-to-end encryption is off on this device")
            return
        user = cmd.get("user") or ring.me
        keys = await ring.keys_of(user, fresh=True)
        mine = ring.is_me(keys.user)
        if mine:
            self.info(f"this device: {ring.label} ({ring.device}), fingerprint"
                      f" {ring.identity.fingerprint}")
        if not keys.devices:
            self.info(f"{keys.user} has no encryption key")
            return
        whose = "your account's" if mine else f"{keys.user}'s"
        self.info(f"{whose} devices ({len(keys.devices)}):")
        for d in keys.devices:
            marks = []
            if mine and d.device == ring.device:
                marks.append("this device")
            if ring.peers.changed(keys.user, d.device) is not None:
                marks.append(f"CHANGED, not accepted yet: /trust {keys.user}")
            since = local_time(d.published_at, full=True) if d.published_at else None
            when = f", since {since}" if since else ""
            mark = f"  [{'; '.join(marks)}]" if marks else ""
            label = d.label or "(no label)"
            self.info(f"  {label}  {d.device}  fingerprint {d.fingerprint}{when}{mark}")
        ring.warn_if_changed(keys.user, keys.devices)

    async def cmd_trust(self, cmd: Command) -> None:
        """``/trust user``: accept the changed keys of *user*'s devices."""
        if self.keyring is None:
            self.error("end-to-end encryption is off on this device")
            return
        keys = await self.keyring.keys_of(cmd.args["user"], fresh=True)
        accepted = self.keyring.peers.accept(keys.user)
        if accepted:
            names = ", ".join(d.name if (d := keys.get(a)) else a for a in accepted)
            self.info(f"you now trust {keys.user}'s changed key(s): {names}")
        else:
            self.info(f"nothing to accept: no key of {keys.user} changed")

    async def cmd_revoke(self, cmd: Command) -> None:
        """``/revoke DEVICE``: remove one of your devices' keys (a lost device)."""
        device = cmd.args["device"]
        await self._need_proto().request("key.revoke", device=device)
        if self.keyring is not None:
            self.keyring.forget(self.keyring.me)
            if device == self.keyring.device:
                self.warning("you removed this device's key: it gets no end-to-end encrypted"
                             " messages until it publishes its key again (at the next login)")
                return
        self.info(f"removed the key of your device {device}: messages are no longer sealed"
                  " for it")

    async def cmd_away(self, cmd: Command) -> None:
        text = cmd.get("text")
        args = {"text": text} if text else {}
        await self._need_proto().request("away", **args)
        self.info(f"you are away: {text}" if text else "you are back")

    async def cmd_contacts(self, cmd: Command) -> None:
        reply = await self._need_proto().request("contacts")
        contacts = reply.get("contacts") or []
        incoming = reply.get("incoming") or []
        outgoing = reply.get("outgoing") or []
        self.info("contacts: " + (", ".join(map(str, contacts)) or "(none yet: /add user)"))
        if incoming:
            self.info("asking you (/add NAME accepts): " + ", ".join(map(str, incoming)))
        if outgoing:
            self.info("waiting for their answer: " + ", ".join(map(str, outgoing)))

    async def cmd_add(self, cmd: Command) -> None:
        reply = await self._need_proto().request("contact.add", user=cmd.args["user"])
        user = reply.get("user", cmd.args["user"])
        if reply.get("status") == "contact":
            self.info(f"{user} and you are contacts now")
        else:
            self.info(f"asked {user} to be your contact; they will see the request")

    async def cmd_remove(self, cmd: Command) -> None:
        reply = await self._need_proto().request("contact.remove", user=cmd.args["user"])
        self.info(f"{reply.get('user', cmd.args['user'])} is not your contact any more")

    async def cmd_dmpolicy(self, cmd: Command) -> None:
        policy = cmd.get("policy")
        args = {"dm_policy": policy} if policy else {}
        reply = await self._need_proto().request("settings", **args)
        policy = str(reply.get("dm_policy"))
        who = {"anyone": "anyone", "contacts": "your contacts only"}.get(policy, policy)
        self.info(f"direct messages are accepted from {who}")

    async def cmd_register(self, cmd: Command) -> None:
        self.error(f"you are logged in as {self.user}; /logout first")

    cmd_login = cmd_register
    cmd_recover = cmd_register

    async def cmd_logout(self, cmd: Command) -> None:
        proto = self._need_proto()
        await proto.request("logout")
        self.sessions.forget(self.user)
        self.info(f"logged out {self.user}; the saved session is gone")
        self.proto = None
        self.user = None
        self.windows.switch(self.windows.status)
        self._refresh()
        await self._account_menu(proto)

    async def cmd_passwd(self, cmd: Command) -> None:
        proto = self._need_proto()
        old = await self.ask("Current password:", secret=True)
        new = await self._new_password("New password")
        await proto.request("passwd", old=old, new=new)
        self.info("password changed; your other sessions were logged out")

    async def cmd_recovery(self, cmd: Command) -> None:
        proto = self._need_proto()
        password = await self.ask("Your password (to get new recovery codes):", secret=True)
        reply = await proto.request("recovery.regenerate", password=password)
        await self._show_recovery_codes(
            "New recovery codes (the old ones no longer work):",
            [str(c) for c in reply.get("recovery_codes", [])])

    async def cmd_otp(self, cmd: Command) -> None:
        proto = self._need_proto()
        if cmd.args["action"] == "disable":
            password = await self.ask("Your password:", secret=True)
            code = await self.ask("A current code from your authenticator app:")
            await proto.request("otp.disable", password=password, code=code.strip())
            self.info("two-factor authentication is off")
            return
        setup = await proto.request("otp.setup")
        uri, secret = str(setup["uri"]), str(setup["secret"])
        self.info("Scan this QR code with an authenticator app (FreeOTP, Aegis, Google"
                  " Authenticator, 1Password...):")
        self.info("\n".join(qr_lines(uri)))
        self.info(f"or add it by hand: secret {secret}")
        self.info(f"({uri})")
        for _ in range(3):
            code = (await self.ask("Type the 6-digit code the app shows, to confirm (empty"
                                   " cancels):")).strip().replace(" ", "")
            if not code:
                self.info("two-factor authentication stays off")
                return
            try:
                await proto.request("otp.enable", code=code)
            except RequestFailed as e:
                self.error(f"{e.message}; check the phone's clock, and try the next code")
                continue
            self.info("two-factor authentication is on: logging in with a password now"
                      " also asks for a code.")
            return
        self.error("two-factor authentication stays off; /otp enable to try again")
