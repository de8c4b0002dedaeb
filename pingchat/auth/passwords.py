"""Password hashing with bcrypt, pre-hashed so that any length works.

bcrypt reads only the first 72 bytes of its input (and bcrypt 5 refuses longer
input), so every password is first reduced to the base64 of its SHA-256 digest
(44 bytes, no NUL). Nothing is truncated, nothing long is refused.

The functions here block for tens to hundreds of milliseconds: call them only
through :class:`PasswordHasher`, which runs them in a thread.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import bcrypt
from twisted.internet.defer import Deferred

from pingchat.errors import WeakPassword

T = TypeVar("T")
DEFAULT_ROUNDS = 12
MAX_PASSWORD_BYTES = 1024


def bcrypt_rounds() -> int:
    """The bcrypt cost: 12, or ``PINGCHAT_BCRYPT_ROUNDS`` (tests use 4)."""
    value = os.environ.get("PINGCHAT_BCRYPT_ROUNDS")
    if not value:
        return DEFAULT_ROUNDS
    rounds = int(value)
    if not 4 <= rounds <= 31:
        raise ValueError("PINGCHAT_BCRYPT_ROUNDS must be between 4 and 31")
    return rounds


def check_password_policy(password: object, min_length: int) -> str:
    """Return *password* if it meets the policy, else raise ``WeakPassword``."""
    if not isinstance(password, str):
        raise WeakPassword("the password must be a string")
    if len(password) < min_length:
        raise WeakPassword(f"the password must be at least {min_length} characters")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise WeakPassword(f"the password must be at most {MAX_PASSWORD_BYTES} bytes")
    return password


def _prehash(password: bytes) -> bytes:
    return base64.b64encode(hashlib.sha256(password).digest())


def hash_password_blocking(password: bytes, rounds: int) -> bytes:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds))


def check_password_blocking(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), hashed)
    except ValueError:
        return False


Runner = Callable[..., "Deferred[Any]"]

# Niceness of the threads that run bcrypt. A login storm queues hundreds of
# hashes; at normal priority the two bcrypt threads took two thirds of the
# server's core from the reactor thread, which stalled every connection.
# Niced, they use what the reactor leaves (all of it while it is idle).
BACKGROUND_NICENESS = 10
_niced = threading.local()


def in_background(fn: Callable[..., T], *args: Any) -> T:
    """Run *fn* in the calling worker thread after lowering that thread's priority."""
    if not getattr(_niced, "done", False):
        _niced.done = True
        # Not on Linux, threads share the process's priority: nothing to do.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
    return fn(*args)


class PasswordHasher:
    """bcrypt off the reactor thread.

    *run* is ``deferToThread`` (or ``deferToThreadPool`` bound to a pool) in
    production; tests may pass a runner that calls the function at once.
    """

    def __init__(self, run: Runner, rounds: int | None = None) -> None:
        self._run = run
        self.rounds = bcrypt_rounds() if rounds is None else rounds
        self._dummy: bytes | None = None

    def hash(self, password: str) -> Deferred[bytes]:
        d: Deferred[bytes] = self._run(
            hash_password_blocking, password.encode("utf-8"), self.rounds
        )
        return d

    def check(self, password: str, hashed: bytes | None) -> Deferred[bool]:
        """Check *password*; with ``hashed=None`` spend the same time and fail.

        Checking an unknown user against a dummy hash of the same cost keeps
        the answer's timing from telling which accounts exist.
        """
        if hashed is None:
            return self._run(self._check_dummy, password.encode("utf-8"))
        d: Deferred[bool] = self._run(check_password_blocking, password.encode("utf-8"), hashed)
        return d

    def _check_dummy(self, password: bytes) -> bool:
        if self._dummy is None:
            self._dummy = hash_password_blocking(os.urandom(16), self.rounds)
        check_password_blocking(password, self._dummy)
        return False
