"""Account deletion in the running server, and noticing deletions made by another process.

:class:`AccountEraser` deletes an account as the store's three steps allow
(:mod:`pingchat.store.erasure`): it ends the account's sessions at once,
erases its messages a batch at a time (so the writer is never held for
long), finishes, audits and then empties the WAL.

``pingchat user delete`` runs in another process and cannot reach the
server's sessions: :class:`DeletionWatcher` reads the ``deleted_accounts``
table every two seconds (one indexed query on the reader thread) and ends
the sessions and memberships of any account deleted since, recognising it
by the keyed digest of its name.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from pingchat.auth.audit import Auditor
from pingchat.auth.sealing import Sealer
from pingchat.chat.service import ChatService
from pingchat.chat.session import Session
from pingchat.interfaces import IStore
from pingchat.model import fold
from pingchat.store.erasure import MODES, Erased, placeholder

log = Logger()

NAME_DIGEST = "deleted account name"  # the digest's purpose (Sealer.digest)
RESERVE_DAYS = 30  # a deleted account's name cannot be registered again for this long
DAY_MS = 24 * 3600 * 1000
DELETED_REASON = "this account has been deleted"
WATCH_INTERVAL = 2.0  # seconds between looks for deletions by another process


def name_digest(sealer: Sealer, name: str) -> bytes:
    """The keyed digest that stands for a deleted account's name."""
    return sealer.digest(NAME_DIGEST, fold(name))


def empty_wal(store: IStore, clock: IReactorTime, tries: int = 30) -> Deferred[None]:
    """No old copy of a deleted row left in the database's files
    (:meth:`IStore.scrub_wal`), trying again a little later while readers
    keep the WAL from being emptied.

    Until then the WAL may still hold the pages of deleted rows as they were.
    Fires when done or given up (which is logged).
    """
    done: Deferred[None] = Deferred()

    def attempt(left: int) -> None:
        def failed(f: Failure) -> None:
            if f.check(RuntimeError):  # the database closed meanwhile, and checkpointed
                done.callback(None)
            elif left > 1:
                clock.callLater(2.0, attempt, left - 1)  # type: ignore[attr-defined]
            else:
                log.failure("could not empty the WAL after a deletion", f)
                done.callback(None)

        store.scrub_wal().addCallbacks(lambda _: done.callback(None), failed)

    attempt(tries)
    return done


class AccountEraser:
    """Deletes accounts from the running server (the native op, the manhole)."""

    def __init__(
        self,
        store: IStore,
        service: ChatService,
        clock: IReactorTime,
        audit: Auditor,
        sealer: Sealer,
        mode: str = "remove",
        reserve_days: float = RESERVE_DAYS,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"deleted messages: {mode!r} is not one of {', '.join(MODES)}")
        self.store = store
        self.service = service
        self.clock = clock
        self.audit = audit
        self.sealer = sealer
        self.mode = mode
        self.reserve_ms = int(reserve_days * DAY_MS)
        self.wal_emptied: Deferred[None] | None = None

    def now(self) -> int:
        return int(self.clock.seconds() * 1000)

    def name_digest(self, name: str) -> bytes:
        return name_digest(self.sealer, name)

    @inlineCallbacks
    def erase(
        self,
        name: str,
        actor: str | None,
        address: str | None = None,
        reason: str = DELETED_REASON,
        keep: Session | None = None,
    ) -> Any:
        """Delete the account *name*; fires with what was done.

        Its sessions end at once (but *keep*, the session that asked, which
        ends itself after its reply). *actor* (None: the account itself) and
        *address* go into the audit log. Fails with ``NoSuchUser``.
        """
        now = self.now()
        deletion = yield self.store.begin_account_deletion(
            name, self.name_digest(name), now, now + self.reserve_ms
        )
        ended = self.service.remove_account(deletion.name, deletion.placeholder, reason, keep)
        erased = Erased()
        while True:
            batch: Erased = yield self.store.erase_messages(deletion, self.mode)
            if not batch.total:
                break
            erased += batch
        erased += yield self.store.finish_account_deletion(deletion, self.mode, self.now())
        self.audit(
            "account_deleted",
            account=deletion.placeholder,
            actor=actor or deletion.placeholder,
            address=address,
            messages=self.mode,
            removed=erased.removed,
            anonymised=erased.anonymised,
            sessions=ended + (keep is not None),
        )
        self.wal_emptied = empty_wal(self.store, self.clock)
        return {
            "user": deletion.name,
            "placeholder": deletion.placeholder,
            "messages": self.mode,
            "removed": erased.removed,
            "anonymised": erased.anonymised,
            "sessions": ended,
            "reserved_until": deletion.reserved_until,
        }

    def name_reserved(self, name: str) -> Deferred[int | None]:
        """Until when *name* is kept from registration (a deleted account's), or None."""
        return self.store.name_reserved(self.name_digest(name), self.now())


class DeletionWatcher(Service):
    """Ends the sessions and memberships of accounts deleted by another process."""

    name = "deletion-watcher"

    def __init__(
        self,
        eraser: AccountEraser,
        clock: IReactorTime,
        last: int,
        interval: float = WATCH_INTERVAL,
    ) -> None:
        self.eraser = eraser
        self.clock = clock
        self.last = last  # the newest deletion the service's memory already reflects
        self.interval = interval
        self._loop: LoopingCall | None = None
        self._looking = False

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self.look)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def look(self) -> Deferred[int] | None:
        """Look for new deletions; fires with the number of accounts found in memory."""
        if self._looking:
            return None
        self._looking = True

        def done(result: Any) -> Any:
            self._looking = False
            return result

        d = self.eraser.store.deletions_since(self.last).addCallback(self._found)
        d.addBoth(done)
        d.addErrback(lambda f: log.failure("could not look for deleted accounts", f))
        return d

    def _found(self, deletions: list[tuple[int, bytes]]) -> int:
        if not deletions:
            return 0
        self.last = deletions[-1][0]
        wanted = {digest: ident for ident, digest in deletions}
        service = self.eraser.service
        names = {s.name for s in service.all_sessions() if not s.guest}
        for room in service.all_rooms():
            names.update(m.name for m in room.members.values() if not m.guest)
        found = 0
        for name in names:
            ident = wanted.get(self.eraser.name_digest(name))
            if ident is not None:
                found += 1
                ended = service.remove_account(name, placeholder(ident), DELETED_REASON)
                log.info(
                    "account {placeholder} was deleted by another process:"
                    " {sessions} session(s) ended",
                    placeholder=placeholder(ident),
                    sessions=ended,
                )
        return found
