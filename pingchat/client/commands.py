"""The client's slash commands: a pure parser from an input line to a :class:`Command`.

A line that does not start with ``/`` is text for the current room or
conversation (``//`` sends a line that starts with ``/``). The parser checks
the shape of the arguments and names them; what a command means is up to the
client, which fills in defaults such as the current room.
"""

from __future__ import annotations

import attrs


class CommandError(ValueError):
    """A line that is not a valid command; the message says how to write it."""


@attrs.frozen
class Command:
    name: str
    args: dict[str, str] = attrs.field(factory=dict)

    def get(self, key: str) -> str | None:
        return self.args.get(key)


@attrs.frozen
class Spec:
    name: str
    usage: str
    summary: str
    group: str
    aliases: tuple[str, ...] = ()


SPECS: tuple[Spec, ...] = (
    Spec("join", "/join #room [key]", "join (or create) a room and switch to it", "rooms",
         ("j",)),
    Spec("part", "/part [#room] [reason]", "leave a room (default: the current one)", "rooms",
         ("leave",)),
    Spec("rooms", "/rooms", "list the rooms on the server", "rooms", ("list",)),
    Spec("members", "/members [#room]", "who is in a room", "rooms", ("names",)),
    Spec("topic", "/topic [#room] [new topic]", "show or change a room's topic", "rooms"),
    Spec("history", "/history [#room|user] [count]",
         "show earlier messages of this (or another) conversation", "rooms"),
    Spec("kick", "/kick [#room] user [reason]", "remove someone from a room (operators)",
         "rooms"),
    Spec("delete", "/delete [user|ID] [reason]", "delete a message for everyone: your last"
         " one here, USER's last one (room operators), or message ID", "rooms",
         ("del", "redact")),
    Spec("invite", "/invite user [#room]", "invite someone to a room", "rooms"),
    Spec("msg", "/msg user|#room text", "send a direct message (end-to-end encrypted when"
         " the other side has a key) or a room message", "people", ("m", "tell")),
    Spec("me", "/me does something", "an action: shown as \"* you do something\"",
         "people"),
    Spec("query", "/query user|#room|N", "switch to a conversation (opens a DM window)",
         "people", ("switch", "win", "w")),
    Spec("close", "/close", "close the current window (leaves a room)", "people", ("wc",)),
    Spec("who", "/who", "everyone online", "people"),
    Spec("whois", "/whois user", "about someone: presence, rooms, key fingerprint", "people",
         ("wi",)),
    Spec("away", "/away [message]", "set yourself away; without a message, back again",
         "people"),
    Spec("contacts", "/contacts", "your contacts and pending requests", "people"),
    Spec("add", "/add user", "ask someone to be a contact (or accept their request)",
         "people"),
    Spec("remove", "/remove user", "remove a contact (or withdraw a request)", "people"),
    Spec("dmpolicy", "/dmpolicy [anyone|contacts]", "who may send you direct messages",
         "people"),
    Spec("keys", "/keys [user]",
         "the encryption keys of your (or someone's) devices: fingerprints to compare in"
         " person", "people", ("fingerprint", "fp")),
    Spec("trust", "/trust user", "accept someone's changed encryption key (after comparing"
         " fingerprints)", "people"),
    Spec("revoke", "/revoke DEVICE", "remove the encryption key of one of your devices (a"
         " lost one; /keys lists them)", "account"),
    Spec("register", "/register", "create an account (before logging in)", "account"),
    Spec("login", "/login", "log in (before logging in)", "account"),
    Spec("recover", "/recover", "reset a forgotten password with a recovery code",
         "account"),
    Spec("passwd", "/passwd", "change your password", "account", ("password",)),
    Spec("otp", "/otp enable|disable", "turn two-factor authentication (TOTP) on or off",
         "account", ("2fa",)),
    Spec("recovery", "/recovery", "get a fresh set of recovery codes", "account"),
    Spec("logout", "/logout", "end this session and forget its saved token", "account"),
    Spec("deleteaccount", "/deleteaccount", "delete your account on this server for good"
         " (says what goes, then asks for the name and the password)", "account"),
    Spec("help", "/help [command]", "this list, or help on one command", "client", ("h",)),
    Spec("reconnect", "/reconnect", "connect again now", "client"),
    Spec("clear", "/clear", "clear the current window", "client"),
    Spec("quit", "/quit", "leave the client (the session is kept for next time)", "client",
         ("exit", "q")),
)

_BY_NAME: dict[str, Spec] = {}
for _spec in SPECS:
    _BY_NAME[_spec.name] = _spec
    for _alias in _spec.aliases:
        _BY_NAME[_alias] = _spec

GROUPS = (("rooms", "Rooms"), ("people", "People and direct messages"),
          ("account", "Your account"), ("client", "The client"))


def spec(name: str) -> Spec | None:
    return _BY_NAME.get(name.lstrip("/").lower())


def help_lines(topic: str | None = None) -> list[str]:
    """The help text: every command grouped, or the usage of one."""
    if topic:
        found = spec(topic)
        if found is None:
            raise CommandError(f"no command /{topic.lstrip('/')}; /help lists them all")
        lines = [f"{found.usage}  —  {found.summary}"]
        if found.aliases:
            lines.append("also: " + ", ".join("/" + a for a in found.aliases))
        return lines
    lines = []
    for group, title in GROUPS:
        lines.append(f"{title}:")
        for s in SPECS:
            if s.group == group:
                lines.append(f"  {s.usage:<32} {s.summary}")
    lines += [
        "Type text without a / to talk in the current window. // starts a line with /.",
        "Keys: Ctrl-N/Ctrl-P or Alt-1..9 switch windows, PageUp/PageDown scroll,"
        " Up/Down recall input, Tab completes, Ctrl-C quits.",
    ]
    return lines


def _room(name: str) -> str:
    return name if name.startswith("#") else "#" + name


def _usage(s: Spec) -> CommandError:
    return CommandError(f"usage: {s.usage}")


def parse(line: str) -> Command:
    """Turn one input line into a command; text becomes ``say``."""
    if not line.startswith("/"):
        return Command("say", {"text": line})
    if line.startswith("//"):
        return Command("say", {"text": line[1:]})
    word, _, rest = line[1:].partition(" ")
    rest = rest.strip()
    if not word:
        raise CommandError("a command name goes right after the / (/help lists them)")
    s = spec(word)
    if s is None:
        raise CommandError(f"unknown command /{word}; /help lists the commands")
    words = rest.split()
    name = s.name
    args: dict[str, str] = {}

    def first_and_rest() -> tuple[str, str]:
        head, _, tail = rest.partition(" ")
        return head, tail.strip()

    if name in ("rooms", "who", "contacts", "register", "login", "recover", "passwd",
                "recovery", "logout", "deleteaccount", "reconnect", "clear", "quit", "close"):
        if words and name not in ("quit",):
            raise _usage(s)
    elif name == "join":
        if not 1 <= len(words) <= 2:
            raise _usage(s)
        args["room"] = _room(words[0])
        if len(words) == 2:
            args["key"] = words[1]
    elif name == "part":
        if words and words[0].startswith("#"):
            args["room"], reason = first_and_rest()
        else:
            reason = rest
        if reason:
            args["reason"] = reason
    elif name == "members":
        if len(words) > 1:
            raise _usage(s)
        if words:
            args["room"] = _room(words[0])
    elif name == "topic":
        if words and words[0].startswith("#"):
            args["room"], topic = first_and_rest()
        else:
            topic = rest
        if topic:
            args["topic"] = topic
    elif name == "history":
        if len(words) > 2:
            raise _usage(s)
        for w in words:
            if w.isdigit():
                if "limit" in args or not 1 <= int(w) <= 200:
                    raise CommandError("the count is a number from 1 to 200")
                args["limit"] = w
            elif "target" in args:
                raise _usage(s)
            else:
                args["target"] = w
    elif name == "kick":
        if words and words[0].startswith("#"):
            args["room"], rest = first_and_rest()
        user, _, reason = rest.partition(" ")
        if not user:
            raise _usage(s)
        args["user"] = user
        if reason.strip():
            args["reason"] = reason.strip()
    elif name == "delete":
        head, reason = first_and_rest()
        if head.isdigit():
            args["id"] = head
        elif head:
            args["user"] = head
        if reason:
            args["reason"] = reason
    elif name == "invite":
        if not 1 <= len(words) <= 2:
            raise _usage(s)
        args["user"] = words[0]
        if len(words) == 2:
            args["room"] = _room(words[1])
    elif name == "msg":
        to, text = first_and_rest()
        if not to or not text:
            raise _usage(s)
        args["to"], args["text"] = to, text
    elif name == "query":
        if len(words) != 1:
            raise _usage(s)
        args["target"] = words[0]
    elif name in ("whois", "add", "remove", "trust"):
        if len(words) != 1:
            raise _usage(s)
        args["user"] = words[0]
    elif name == "keys":
        if len(words) > 1:
            raise _usage(s)
        if words:
            args["user"] = words[0]
    elif name == "revoke":
        if len(words) != 1:
            raise _usage(s)
        args["device"] = words[0]
    elif name == "me":
        if not rest:
            raise _usage(s)
        args["text"] = rest
    elif name == "away":
        if rest:
            args["text"] = rest
    elif name == "dmpolicy":
        if len(words) > 1 or (words and words[0].lower() not in ("anyone", "contacts")):
            raise _usage(s)
        if words:
            args["policy"] = words[0].lower()
    elif name == "otp":
        if len(words) != 1 or words[0].lower() not in ("enable", "disable", "on", "off"):
            raise _usage(s)
        args["action"] = "enable" if words[0].lower() in ("enable", "on") else "disable"
    elif name == "help":
        if len(words) > 1:
            raise _usage(s)
        if words:
            args["topic"] = words[0].lstrip("/")
    return Command(name, args)
