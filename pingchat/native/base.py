"""What the native door's op mixins share with :class:`~pingchat.native.protocol.NativeProtocol`.

:class:`~pingchat.native.protocol.NativeProtocol` is one class assembled
from mixins, one per area of the protocol's ops (docs/protocol.md):
:mod:`~pingchat.native.login` (register, log in, resume, recover, log
out), :mod:`~pingchat.native.rooms`, :mod:`~pingchat.native.messaging`,
:mod:`~pingchat.native.people` (who, whois, away, kill) and
:mod:`~pingchat.native.account` (passwords, OTP, deleting the account,
recovery codes, contacts, settings, device keys). An op is a method ``op_<name>`` (dots as
underscores) that takes the request and returns the reply's fields, or a
Deferred of them. :class:`NativeBase` declares, for the type checker only,
what the mixins use of the protocol; at run time it is empty. It imports
none of them: the protocol sits on top of the package, this module at its
bottom.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pingchat.errors import BadRequest

if TYPE_CHECKING:
    from pingchat.chat.session import Session


def field(req: dict[str, Any], name: str, kind: type = str, required: bool = True) -> Any:
    """*req*'s field *name*, of type *kind*; ``BadRequest`` if it is missing (when
    *required*) or of another type."""
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


class NativeBase:
    """The base of the op mixins: declarations only (see the module docstring)."""

    if TYPE_CHECKING:
        # NativeProtocol's state (factory stays Any, as Twisted's Protocol declares it).
        factory: Any
        address: str | None
        closed: bool
        session: Session | None
        _logout: Callable[[], None] | None
        _authenticating: bool

        # Defined in NativeProtocol (protocol.py).
        @property
        def me(self) -> Session: ...
        def _end_session(self) -> None: ...
        def disconnect(self, reason: str) -> None: ...
