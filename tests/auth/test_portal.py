"""The portal counts each door's logins and refusals (for the metrics)."""

from __future__ import annotations

from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet.defer import fail, succeed
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import Interface, implementer

from pingchat.auth.checkers import LoginThrottled
from pingchat.auth.portal import CountingPortal


class IThing(Interface):
    pass


@implementer(IRealm)
class Realm:
    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:  # noqa: N802
        if avatarId == b"broken":
            return fail(RuntimeError("the store went away"))
        return succeed((IThing, object(), lambda: None))


class Mind:
    def __init__(self, door: str) -> None:
        self.door = door


class Throttled:
    credentialInterfaces = (IUsernamePassword,)

    def requestAvatarId(self, credentials: Any) -> Any:  # noqa: N802
        return fail(LoginThrottled(3.0))


class CountingPortalTests(SynchronousTestCase):
    def setUp(self) -> None:
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret", broken=b"x")
        self.portal = CountingPortal(Realm(), [checker])

    def login(self, name: bytes, password: bytes, door: str) -> Any:
        return self.portal.login(UsernamePassword(name, password), Mind(door), IThing)

    def test_logins_and_failures_are_counted_by_the_minds_door(self) -> None:
        self.successResultOf(self.login(b"alice", b"secret", "native"))
        self.successResultOf(self.login(b"alice", b"secret", "web-irc"))
        self.successResultOf(self.login(b"alice", b"secret", "native"))
        self.failureResultOf(self.login(b"alice", b"wrong", "irc"), UnauthorizedLogin)
        self.failureResultOf(self.login(b"broken", b"x", "web"), RuntimeError)
        self.assertEqual(dict(self.portal.logins), {"native": 2, "web-irc": 1})
        self.assertEqual(
            dict(self.portal.failures), {("irc", "auth_failed"): 1, ("web", "error"): 1}
        )

    def test_a_failure_is_counted_by_the_error_code_the_client_gets(self) -> None:
        portal = CountingPortal(Realm(), [Throttled()], door="manhole")
        creds = UsernamePassword(b"root1", b"pw")
        self.failureResultOf(portal.login(creds, "192.0.2.1", IThing), LoginThrottled)
        self.assertEqual(dict(portal.failures), {("manhole", "rate_limited"): 1})
        self.assertEqual(dict(portal.logins), {})
