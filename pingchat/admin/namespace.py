"""The manhole's namespace: live objects and helpers that are safe at a prompt.

Every helper runs on the reactor thread (the manhole is a protocol like any
other). Helpers that only read or change memory answer at once; helpers that
touch the database return a Deferred, which the manhole waits for before it
prints the next prompt. Bad names raise a :class:`~pingchat.errors.ChatError`
whose message says what was wrong. Every helper that changes state writes an
audit record naming the administrator.

The helpers are in groups, by what they do (:mod:`~pingchat.admin.inspection`,
:mod:`~pingchat.admin.users`, :mod:`~pingchat.admin.rooms`, each a
:class:`~pingchat.admin.tools.Toolbox`); :class:`AdminTools` puts them
together for one administrator's session.
"""

from __future__ import annotations

from typing import Any

from pingchat.admin.inspection import Inspection
from pingchat.admin.rooms import RoomTools
from pingchat.admin.tools import Done, RateMeter, Report, Table, Toolbox
from pingchat.admin.users import AccountTools
from pingchat.errors import BadRequest

__all__ = [
    "BANNER", "HELPERS", "AdminTools", "Done", "RateMeter", "Report", "Table", "banner",
]  # fmt: skip


# The groups of helpers, in the order help() lists them.
GROUPS: tuple[type[Toolbox], ...] = (Inspection, AccountTools, RoomTools)


class AdminTools(Toolbox):
    """The helpers of one administrator's manhole session, from every group.

    *actor* is the administrator's account name: it goes into the audit log
    with every change made here.
    """

    helpers = ("reload",)

    def namespace(self) -> dict[str, Any]:
        """The names an administrator finds at the prompt."""
        names: dict[str, Any] = {
            "server": self.server,
            "chat": self.server.chat,
            "store": self.server.store,
            "accounts_manager": self.server.accounts,
        }
        context = (self.server, self.actor, self.clock, self.meter, self.address)
        for group in (*(cls(*context) for cls in GROUPS), self):
            for helper in group.helpers:
                names[helper] = getattr(group, helper)
        names["help"] = self.help
        return names

    def help(self, thing: Any = None) -> Done:
        """This list of helpers, or the description of one of them: help(kick)."""
        if thing is None:
            return Done(BANNER.rstrip())
        doc = getattr(thing, "__doc__", None) or "(no description)"
        return Done(" ".join(doc.replace("*", "").split()))

    def reload(self) -> Done:
        """Read the TLS certificates and the config file's reloadable options again, as
        SIGHUP does: new connections get a new certificate, no connection closes."""
        reloader = self.server.extras.get("reloader")
        if reloader is None:
            raise BadRequest("this server cannot reload")
        lines = reloader.reload()
        self._audit("admin_reload", outcome=lines)
        return Done("\n".join(lines) or "nothing to reload")


HELPERS = (*(name for group in GROUPS for name in group.helpers), *AdminTools.helpers)

BANNER = """\
  chat, store, server       the live chat service, the store, the whole server
  who()                     who is connected, through which door
  rooms()                   every room: members, modes, topic
  sessions(user)            the live sessions of a user
  accounts()                every account: role, disabled, last seen
  kick(user, reason)        close every session of a user (native and IRC)
  disable(user), enable(user)
                            disabling ends the user's sessions and refuses logins
  delete_user(user)         delete an account for good (docs/admin.md)
  reset(user)               set a new random password and show it once
  adduser(user, admin=False)
                            create an account with a random password, shown once
  invite(uses=1, expires_days=7), invites(), revoke_invite(id)
                            invite codes, for --registration invite
  promote(user), demote(user)
                            grant or take the admin role
  broadcast(text)           a server notice to every session
  topic(room, text)         set a room's topic
  ban(room, user), unban(room, user)
  stats()                   connections, sessions, rooms, messages/s, queues, memory
  reload()                  re-read the TLS certificates and reloadable options (as SIGHUP)
  audit(n)                  the last n audit log entries
  help(), help(kick)        this list, or one helper's description
Helpers that touch the database wait for it (Ctrl-C stops waiting).
Every change made here is audited under your name. Ctrl-D leaves.
"""


def banner(actor: str, server_name: str) -> str:
    return f"pingchat manhole on {server_name}, logged in as {actor}.\n{BANNER}"
