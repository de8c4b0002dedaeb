"""History retention on an inline server driven by a task.Clock: the server's
--history-days, a room's +H, the offline queue's --offline-days."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from pingchat.chat.retention import BATCH_MAX, BATCH_MIN, INTERVAL, PAUSE, Retention
from pingchat.store.retention import BATCH
from pingchat.testing import NativeTestClient, make_server
from tests.backends import on_postgresql
from tests.helpers import PASSWORD, ServerTestCase

DAY = 24 * 3600.0


class RetentionCase(ServerTestCase):
    def retention(self) -> Retention:
        return self.server.top.getServiceNamed("retention")  # type: ignore[no-any-return]

    def expire(self) -> dict[str, int]:
        """One run to its end, the clock moving through the pauses between batches."""
        retention = self.retention()
        d = retention.expire()
        for _ in range(1000):
            if retention.running_expiry is None:
                break
            self.clock.advance(PAUSE)
        return self.successResultOf(d)  # type: ignore[no-any-return]

    def texts(self, c: NativeTestClient, **where: Any) -> list[str]:
        reply = c.request("history", **where)
        self.assertTrue(reply["ok"], reply)
        return [m.get("text") for m in reply["messages"]]


class ServerRetentionTests(RetentionCase):
    settings = {"history_days": 1}

    def test_old_history_goes_at_start_up_and_then_every_ten_minutes(self) -> None:
        alice = self.account("alice")
        alice.request("join", room="#lobby")
        alice.request("say", room="#lobby", text="day one")
        self.clock.advance(DAY + 1)
        alice.request("say", room="#lobby", text="day two")
        retention = self.retention()
        retention.startService()
        self.addCleanup(retention.stopService)
        self.assertEqual(self.texts(alice, room="#lobby"), ["day two"])
        self.clock.advance(DAY)  # runs every ten minutes; "day two" is just a day old
        self.assertEqual(self.texts(alice, room="#lobby"), ["day two"])
        self.clock.advance(INTERVAL)  # the next run: older than a day
        self.assertEqual(self.texts(alice, room="#lobby"), [])

    def test_dms_expire_too_and_leave_chathistory_targets(self) -> None:
        alice, bob = self.account("alice"), self.account("bob")
        self.account("carol")
        alice.request("dm", to="bob", text="old news")
        self.clock.advance(DAY + 1)
        alice.request("dm", to="carol", text="fresh")
        self.assertEqual(self.expire()["messages"], 1)
        self.assertEqual(self.texts(bob, **{"with": "alice"}), [])
        session = self.server.chat.sessions_of("alice")[0]
        now = self.server.chat.now()
        targets = self.successResultOf(self.server.chat.history_targets(session, 0, now + 1))
        self.assertEqual([t[0] for t in targets], ["carol"])

    def test_a_room_cannot_keep_more_than_the_server(self) -> None:
        alice = self.account("alice")
        alice.request("join", room="#lobby")
        self.assertTrue(alice.request("mode", room="#lobby", history_days=30)["ok"])
        alice.request("say", room="#lobby", text="old")
        self.clock.advance(DAY + 1)
        self.expire()
        self.assertEqual(self.texts(alice, room="#lobby"), [])

    def test_a_run_asks_nothing_more_of_a_database_stopping_beside_it(self) -> None:
        """The tree stops its services all at once: the database may close
        while a run waits for it (the threaded server did, in a test)."""
        store, retention = self.server.store, self.retention()
        held: Deferred[int] = Deferred()
        self.patch(store, "expiry_bound", lambda *args: held)
        run = retention.expire()
        stopped = retention.stopService()
        self.successResultOf(self.server.db.stop())
        held.callback(10)
        self.assertEqual(self.successResultOf(run), {"offline": 0, "messages": 0})
        assert stopped is not None
        self.successResultOf(stopped)

    def test_an_undelivered_dm_waits_for_its_recipient(self) -> None:
        alice = self.account("alice")
        self.successResultOf(self.server.accounts.register("bob", PASSWORD))
        alice.request("dm", to="bob", text="are you there?")
        self.clock.advance(3 * DAY)
        self.assertEqual(self.expire(), {"offline": 0, "messages": 0})
        bob = self.login("bob")
        offline = bob.take_events("message")
        self.assertEqual([(m["text"], m.get("offline")) for m in offline],
                         [("are you there?", True)])
        self.assertEqual(self.expire()["messages"], 1)  # delivered: history's rule now



ServerRetentionTestsOnPostgreSQL = on_postgresql(ServerRetentionTests)


class FileTests(RetentionCase):
    """SQLite: what expired is gone from the database's files."""

    settings = {"history_days": 1}

    def test_the_deleted_text_is_not_left_in_the_file(self) -> None:
        alice = self.account("alice")
        alice.request("join", room="#lobby")
        alice.request("say", room="#lobby", text="expire me 7f3a9c")
        self.clock.advance(DAY + 1)
        alice.request("say", room="#lobby", text="keep me 2b8e1d")
        self.expire()
        data = b"".join(
            p.read_bytes() for p in self.data_dir.glob("pingchat.sqlite3*") if p.is_file()
        )
        self.assertFalse(b"expire me 7f3a9c" in data)
        self.assertTrue(b"keep me 2b8e1d" in data)
        wal = self.data_dir / "pingchat.sqlite3-wal"
        self.assertEqual(wal.stat().st_size if wal.exists() else 0, 0)


class RoomRetentionTests(RetentionCase):
    """No server limit: only rooms with +H lose history."""

    def test_a_room_with_H_keeps_its_days_and_other_rooms_everything(self) -> None:
        alice = self.account("alice")
        for room in ("#short", "#long"):
            alice.request("join", room=room)
        self.assertTrue(alice.request("mode", room="#short", history_days=2)["ok"])
        for room in ("#short", "#long"):
            alice.request("say", room=room, text=f"{room} old")
        self.clock.advance(2 * DAY + 1)
        for room in ("#short", "#long"):
            alice.request("say", room=room, text=f"{room} new")
        self.assertEqual(self.expire()["messages"], 1)
        self.assertEqual(self.texts(alice, room="#short"), ["#short new"])
        self.assertEqual(self.texts(alice, room="#long"), ["#long old", "#long new"])

    def busy_room(self, count: int) -> int:
        """A room with +H 1 and *count* messages a day and a second old; its id."""
        alice = self.account("alice")
        alice.request("join", room="#busy")
        alice.request("mode", room="#busy", history_days=1)
        room = self.server.chat.get_room("#busy")
        for i in range(count):
            self.successResultOf(self.server.store.add_room_message(
                room.id, room.name, "alice", None, f"line {i}", self.server.chat.now()
            ))
        self.clock.advance(DAY + 1)
        return room.id

    def test_many_batches_each_a_job_of_its_own(self) -> None:
        self.busy_room(1200)
        store = self.server.store
        retention = self.retention()
        jobs: list[int] = []
        original = store.expire_messages

        def counted(*args: Any) -> Any:
            jobs.append(args[4])
            return original(*args)

        self.patch(store, "expire_messages", counted)
        backfills: list[int] = []
        backfill = self.server.db.backfill
        self.patch(self.server.db, "backfill", lambda: (backfills.append(len(jobs)), backfill())[1])
        retention.batch = 500
        retention._adapt = lambda seconds: None  # type: ignore[method-assign]
        run = retention.expire()
        self.assertEqual((jobs, backfills), ([500], [1]))  # the WAL copied after each batch
        self.clock.advance(PAUSE - 0.001)
        self.assertEqual(jobs, [500])  # resting between batches
        self.clock.advance(0.001)
        self.assertEqual(jobs, [500, 500])
        self.clock.advance(PAUSE)
        self.assertEqual(self.successResultOf(run)["messages"], 1200)
        self.assertEqual((jobs, backfills), ([500, 500, 500], [1, 2]))

    def test_batches_shrink_when_slow_and_grow_when_quick(self) -> None:
        retention = self.retention()
        self.assertEqual(retention.batch, BATCH)
        retention._adapt(0.010)
        self.assertEqual(retention.batch, BATCH // 2)
        for _ in range(20):
            retention._adapt(0.010)
        self.assertEqual(retention.batch, BATCH_MIN)
        for _ in range(20):
            retention._adapt(0.0001)
        self.assertEqual(retention.batch, BATCH_MAX)
        retention._adapt(0.002)
        self.assertEqual(retention.batch, BATCH_MAX)

    def test_a_run_stops_between_batches_when_the_service_stops(self) -> None:
        room = self.busy_room(1200)
        store, retention = self.server.store, self.retention()
        held: list[tuple[Deferred[Any], Deferred[Any]]] = []
        original = store.expire_messages

        def slow(*args: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            held.append((original(*args), d))
            return d

        self.patch(store, "expire_messages", slow)
        retention.batch = 500
        retention._adapt = lambda seconds: None  # type: ignore[method-assign]
        run = retention.expire()
        self.assertEqual(len(held), 1)
        stopped = retention.stopService()
        assert stopped is not None
        self.assertNoResult(stopped)
        done, d = held.pop()
        done.chainDeferred(d)  # the batch under way commits; no other starts
        self.successResultOf(stopped)
        self.assertEqual((held, self.successResultOf(run)["messages"]), ([], 500))
        count = "SELECT count(*) FROM messages WHERE room_id = ?"
        left = self.server.db.run_sync(lambda c: c.execute(count, (room,)).fetchone()[0])
        self.assertEqual(left, 700)


class OfflineRetentionTests(RetentionCase):
    settings = {"offline_days": 1}

    def test_an_undelivered_dm_is_dropped_from_the_queue_but_kept_in_history(self) -> None:
        alice = self.account("alice")
        self.successResultOf(self.server.accounts.register("bob", PASSWORD))
        alice.request("dm", to="bob", text="too late")
        self.clock.advance(DAY + 1)
        self.assertEqual(self.expire(), {"offline": 1, "messages": 0})
        bob = self.login("bob")
        self.assertEqual(bob.take_events("message"), [])
        self.assertEqual(self.texts(bob, **{"with": "alice"}), ["too late"])


class RoomModeTests(RetentionCase):
    def test_operators_set_and_clear_H_natively_and_everyone_sees_it(self) -> None:
        alice, bob = self.account("alice"), self.account("bob")
        for c in (alice, bob):
            c.request("join", room="#lobby")
        bob.take_events()
        self.assertError(bob.request("mode", room="#lobby", history_days=3), "forbidden")
        reply = alice.request("mode", room="#lobby", history_days=3)
        self.assertEqual(reply["applied"], [["+H", "3"]])
        self.assertEqual(bob.take_events("mode")[0]["changes"], [["+H", "3"]])
        shown = bob.request("mode", room="#lobby")
        self.assertEqual((shown["modes"], shown["args"], shown["history_days"]), ("+ntH", ["3"], 3))
        self.assertEqual(alice.request("mode", room="#lobby", history_days=None)["applied"],
                         [["-H", None]])
        self.assertIsNone(bob.request("mode", room="#lobby")["history_days"])

    def test_bad_values_are_refused(self) -> None:
        alice = self.account("alice")
        alice.request("join", room="#lobby")
        for bad in (0, -1, 36_501, 1.5, "x", True, "3"):
            if bad == "3":
                continue  # the IRC form, a digit string, is fine
            self.assertError(alice.request("mode", room="#lobby", history_days=bad), "bad_request")

    def test_H_survives_a_restart(self) -> None:
        alice = self.account("alice")
        alice.request("join", room="#lobby")
        alice.request("mode", room="#lobby", history_days=7)
        self.server.db.stop()
        again = make_server(self.data_dir, **self.store_config)
        self.addCleanup(again.db.stop)
        self.assertEqual(again.chat.get_room("#lobby").history_days, 7)


RoomRetentionTestsOnPostgreSQL = on_postgresql(RoomRetentionTests)
OfflineRetentionTestsOnPostgreSQL = on_postgresql(OfflineRetentionTests)
RoomModeTestsOnPostgreSQL = on_postgresql(RoomModeTests)
