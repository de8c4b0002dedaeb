"""The chat domain's exceptions, each carrying the protocol error code it maps to.

Every door (native, IRC, manhole) translates these into its own wire form; the
``code`` is the native protocol's ``error.code``.
"""

from __future__ import annotations

from typing import Any


class ChatError(Exception):
    """A request that the chat world refuses, with a human-readable message."""

    code = "error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class BadRequest(ChatError):
    code = "bad_request"


class NotAuthenticated(ChatError):
    code = "not_authenticated"


class AuthFailed(ChatError):
    code = "auth_failed"


class OTPRequired(ChatError):
    code = "otp_required"


class RateLimited(ChatError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, retry_after=round(retry_after, 3))
        self.retry_after = retry_after


class UserExists(ChatError):
    code = "user_exists"


class InvalidName(ChatError):
    code = "invalid_name"


class WeakPassword(ChatError):
    code = "weak_password"


class NoSuchRoom(ChatError):
    code = "no_such_room"


class NoSuchUser(ChatError):
    code = "no_such_user"


class NotInRoom(ChatError):
    code = "not_in_room"


class Forbidden(ChatError):
    code = "forbidden"


class NoSuchMessage(ChatError):
    """No message of that id that this session can see (or it was deleted)."""

    code = "no_such_message"


class AccountDisabled(ChatError):
    code = "account_disabled"


class TooManyDevices(ChatError):
    code = "too_many_devices"


class NoSuchDevice(ChatError):
    code = "no_such_device"


class RegistrationClosed(ChatError):
    """The server takes no self-registration (``--registration closed``)."""

    code = "registration_closed"


class InviteInvalid(ChatError):
    """Registration needs an invite code, and this one is missing, wrong, used up,
    expired or revoked (one answer for all)."""

    code = "invite_invalid"


class StoreUnavailable(ChatError):
    """The database cannot be reached (PostgreSQL down or the network to it):
    the request is refused rather than acknowledged; the server reconnects
    by itself, and the same request succeeds once the database is back."""

    code = "store_unavailable"
