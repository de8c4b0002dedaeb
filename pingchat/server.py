"""The wired-up server: every component that ``tap.build`` makes, in one record.

The doors' wiring (``attach_irc``, ``attach_manhole``), the manhole's
helpers and the tests take it; it sits below them all, so that none of them
imports the tap, which imports them.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.application import service
from twisted.cred.portal import Portal

from pingchat import config
from pingchat.auth.audit import Auditor
from pingchat.auth.passwords import PasswordHasher
from pingchat.chat.accounts import AccountManager
from pingchat.chat.service import ChatService
from pingchat.interfaces import IStore
from pingchat.native.factory import NativeFactory
from pingchat.startup import ListenerService
from pingchat.store import Database
from pingchat.web.policy import TrustedProxies


@attrs.define
class Server:
    """The wired-up server, for the listeners' wiring, the manhole and the tests."""

    settings: config.Settings
    db: Database
    store: IStore
    chat: ChatService
    portal: Portal
    accounts: AccountManager
    audit: Auditor
    hasher: PasswordHasher
    native: NativeFactory
    top: service.MultiService
    listeners: ListenerService
    tls: Any = None
    # --trusted-proxy: who may connect to a haproxy: listener, and whose
    # X-Forwarded-For and Forwarded headers the web door believes.
    proxies: TrustedProxies = attrs.Factory(TrustedProxies)
    extras: dict[str, Any] = attrs.Factory(dict)
