"""The chat service with recording minds: routing independent of any door."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from pingchat.errors import BadRequest, Forbidden, NotInRoom
from pingchat.testing import RecordingMind
from tests.backends import on_postgresql
from tests.chat.helpers import SessionTestCase


class ServiceTests(SessionTestCase):
    def test_three_first_joins_while_the_store_is_slow_all_succeed(self) -> None:
        chat = self.server.chat
        sessions = [self.session(n)[0] for n in ("alice", "bob", "carol")]
        # Both the room's creation and each membership wait for a commit, as
        # with the real (threaded) database.
        held: list[tuple[Deferred[object], Deferred[object]]] = []

        def later(original: object) -> object:
            def call(*args: object) -> Deferred[object]:
                d: Deferred[object] = Deferred()
                held.append((original(*args), d))  # type: ignore[operator]
                return d

            return call

        self.patch(self.server.store, "create_room", later(self.server.store.create_room))
        self.patch(self.server.store, "add_member", later(self.server.store.add_member))
        joins = [chat.join(s, "#new") for s in sessions]
        while held:  # the commits, in order
            done, d = held.pop(0)
            done.chainDeferred(d)
        rooms = [self.successResultOf(j) for j in joins]
        self.assertEqual({id(r) for r in rooms}, {id(chat.get_room("#new"))})
        self.assertEqual(sorted(rooms[0].members), ["alice", "bob", "carol"])

    def test_concurrent_first_joins_create_the_room_once(self) -> None:
        chat = self.server.chat
        (a, _), (b, _) = self.session("alice"), self.session("bob")
        # Hold the store so both joins see the room missing at the same time.
        held: list[Deferred[object]] = []
        original = self.server.store.create_room

        def slow_create(name: str, now: int) -> Deferred[object]:
            d: Deferred[object] = Deferred()
            held.append(d)
            original(name, now).chainDeferred(d)
            return d

        self.patch(self.server.store, "create_room", slow_create)
        first, second = chat.join(a, "#new"), chat.join(b, "#new")
        self.assertEqual(len(held), 1)
        self.assertIs(self.successResultOf(first), self.successResultOf(second))
        room = chat.get_room("#new")
        self.assertEqual(sorted(room.members), ["alice", "bob"])
        self.assertTrue(room.is_op("alice"))

    def test_room_messages_follow_membership_and_session_changes(self) -> None:
        # Who receives a room's messages is remembered between messages; every
        # change of membership or of sessions must be seen by the next one.
        chat = self.server.chat
        a, amind = self.session("alice")
        b, bmind = self.session("bob")
        self.successResultOf(chat.join(a, "#x"))

        def texts(mind: RecordingMind) -> list[str]:
            return [m.text for m, _offline in mind.named("message")]

        def say(text: str) -> None:
            self.successResultOf(chat.say(a, "#x", text))

        say("one")  # bob is not a member yet
        self.successResultOf(chat.join(b, "#x"))
        say("two")
        b2, b2mind = self.session("bob")  # a second session of a member
        say("three")
        chat.detach(b)
        say("four")
        self.successResultOf(chat.part(b2, "#x"))
        say("five")
        self.successResultOf(chat.join(b2, "#x"))
        c, cmind = self.session("carol")
        self.successResultOf(chat.join(c, "#x"))
        self.successResultOf(chat.kick(a, "#x", "bob"))
        say("six")
        self.assertEqual(texts(bmind), ["two", "three"])
        self.assertEqual(texts(b2mind), ["three", "four"])
        self.assertEqual(texts(cmind), ["six"])
        self.assertEqual(texts(amind), [])  # the sender's own session is skipped
        self.assertEqual(chat.messages_delivered, 1 + 2 + 1 + 1)

    def test_presence_goes_to_those_sharing_a_room(self) -> None:
        chat = self.server.chat
        a, amind = self.session("alice")
        b, _ = self.session("bob")
        _stranger, smind = self.session("carol")
        self.successResultOf(chat.join(a, "#x"))
        self.successResultOf(chat.join(b, "#x"))
        amind.events.clear()
        smind.events.clear()
        chat.set_away(b, "out")
        self.assertEqual(amind.named("presence"), [("bob", "away", "out")])
        self.assertEqual(smind.named("presence"), [])
        chat.detach(b)
        self.assertEqual(amind.named("presence")[-1], ("bob", "offline", None))

    def test_admin_kick_broadcast_and_disconnect_reach_every_session(self) -> None:
        chat = self.server.chat
        a, amind = self.session("alice")
        _a2, amind2 = self.session("alice")
        b, bmind = self.session("bob")
        self.successResultOf(chat.join(a, "#x"))
        self.successResultOf(chat.join(b, "#x"))
        self.successResultOf(chat.kick(None, "#x", "bob", "rules"))
        self.assertEqual(bmind.named("kicked"), [("#x", "bob", "test.pingchat", "rules")])
        self.assertEqual(chat.broadcast("maintenance at noon"), 3)
        for mind in (amind, amind2, bmind):
            self.assertEqual(mind.named("notice")[-1][0], "maintenance at noon")
        self.assertEqual(chat.disconnect_user("alice", "bye"), 2)
        self.assertEqual((amind.disconnected, amind2.disconnected), ("bye", "bye"))

    def test_kick_errors(self) -> None:
        chat = self.server.chat
        a, _ = self.session("alice")
        b, _ = self.session("bob")
        self.successResultOf(chat.join(a, "#x"))
        self.assertRaises(NotInRoom, chat.kick, b, "#x", "alice")
        self.successResultOf(chat.join(b, "#x"))
        self.assertRaises(Forbidden, chat.kick, b, "#x", "alice")
        self.assertRaises(NotInRoom, chat.kick, a, "#x", "carol")

    def test_guest_membership_ends_when_the_guest_leaves(self) -> None:
        chat = self.server.chat
        a, amind = self.session("alice")
        self.successResultOf(chat.join(a, "#x"))
        guest = chat.attach(None, RecordingMind(), "127.0.0.2", name="visitor")
        self.successResultOf(chat.join(guest, "#x"))
        self.successResultOf(chat.say(guest, "#x", "hello from a guest"))
        message = amind.named("message")[-1][0]
        self.assertEqual((message.sender, message.sender_account), ("visitor", None))
        chat.detach(guest)
        self.assertNotIn("visitor", chat.get_room("#x").members)
        self.assertIn(("#x", "visitor", None), amind.named("parted"))

    def test_a_guest_rename_moves_its_memberships_and_tells_the_room(self) -> None:
        chat = self.server.chat
        a, amind = self.session("alice")
        self.successResultOf(chat.join(a, "#x"))
        guest = chat.attach(None, RecordingMind(), "127.0.0.2", name="visitor")
        self.successResultOf(chat.join(guest, "#x"))
        chat.rename(guest, "Wanderer")
        self.assertEqual((guest.name, guest.folded), ("Wanderer", "wanderer"))
        self.assertEqual(chat.sessions_of("wanderer"), [guest])
        self.assertFalse(chat.is_online("visitor"))
        self.assertEqual(chat.get_room("#x").member("wanderer").name, "Wanderer")  # type: ignore[union-attr]
        # A mind without renamed() sees a part and a join.
        self.assertIn(("#x", "visitor", "now known as Wanderer"), amind.named("parted"))
        self.assertIn(("#x", "Wanderer"), amind.named("joined"))

    def test_accounts_and_taken_names_cannot_be_renamed_to(self) -> None:
        chat = self.server.chat
        a, _ = self.session("alice")
        guest = chat.attach(None, RecordingMind(), "127.0.0.2", name="visitor")
        self.assertRaises(Forbidden, chat.rename, a, "alicia")
        self.assertRaises(Forbidden, chat.rename, guest, "ALICE")
        self.assertEqual(guest.name, "visitor")

    def test_rooms_and_membership_survive_a_restart(self) -> None:
        chat = self.server.chat
        a, _ = self.session("alice")
        self.successResultOf(chat.join(a, "#keep"))
        self.successResultOf(chat.change_modes(a, "#keep", [("+i", None), ("+b", "eve")]))
        self.server.db.stop()
        from pingchat.testing import make_server

        again = make_server(self.data_dir, **self.store_config)
        self.addCleanup(again.db.stop)
        room = again.chat.get_room("#keep")
        self.assertEqual((room.flags, room.bans), ({"i", "n", "t"}, ["eve!*@*"]))
        self.assertTrue(room.is_op("alice"))

    def test_dm_to_someone_who_leaves_while_it_is_stored_is_queued(self) -> None:
        chat = self.server.chat
        a, _ = self.session("alice")
        b, _ = self.session("bob")
        held: list[tuple[Deferred[object], Deferred[object]]] = []
        original = self.server.store.add_dm

        def slow_add_dm(*args: object, **kw: object) -> Deferred[object]:
            d: Deferred[object] = Deferred()
            held.append((d, original(*args, **kw)))  # type: ignore[arg-type]
            return d

        self.patch(self.server.store, "add_dm", slow_add_dm)
        sent = chat.dm(a, "bob", text="are you there?")
        chat.detach(b)
        outer, stored = held[0]
        stored.chainDeferred(outer)
        message, delivered = self.successResultOf(sent)
        self.assertFalse(delivered)
        b2, bmind = self.session("bob")
        self.successResultOf(chat.deliver_offline(b2))
        self.assertEqual(
            [(m.id, offline) for m, offline in bmind.named("message")], [(message.id, True)]
        )

    def test_stopping_the_service_closes_every_session(self) -> None:
        chat = self.server.chat
        _, amind = self.session("alice")
        _, bmind = self.session("bob")
        chat.startService()
        chat.stopService()
        self.assertEqual(
            (amind.disconnected, bmind.disconnected),
            ("the server is shutting down", "the server is shutting down"),
        )

    def test_history_bounds_beyond_64_bit_integers_are_bad_request(self) -> None:
        # found by tests/native/test_fuzz.py: SQLite raised OverflowError (an
        # internal error, on the native door and IRC's CHATHISTORY alike)
        alice, _ = self.session("alice")
        self.successResultOf(self.server.chat.join(alice, "#a"))
        for bounds in ({"before": 2**63}, {"after": -(2**63) - 1}, {"before": 10**30}):
            with self.assertRaises(BadRequest, msg=bounds):
                self.server.chat.history(alice, room="#a", **bounds)
            with self.assertRaises(BadRequest, msg=bounds):
                self.server.chat.history(alice, with_="bob", **bounds)
        edge = self.server.chat.history(alice, room="#a", before=2**63 - 1, after=-(2**63))
        self.assertEqual(self.successResultOf(edge), [])

    def test_a_room_limit_beyond_a_32_bit_integer_is_bad_request(self) -> None:
        alice, _ = self.session("alice")
        self.successResultOf(self.server.chat.join(alice, "#a"))
        for limit in (str(2**31), str(2**63), "9" * 30):
            with self.assertRaises(BadRequest, msg=limit):
                self.server.chat.change_modes(alice, "#a", [("+l", limit)])
        applied = self.server.chat.change_modes(alice, "#a", [("+l", str(2**31 - 1))])
        self.assertEqual(self.successResultOf(applied), [("+l", str(2**31 - 1))])

    # -- what the doors ask about the live world --

    def test_room_named_finds_a_room_in_any_case_and_none_for_a_missing_one(self) -> None:
        chat = self.server.chat
        a, _ = self.session("alice")
        room = self.successResultOf(chat.join(a, "#Mixed"))
        self.assertIs(chat.room_named("#mixed"), room)
        self.assertIs(chat.room_named("#MIXED"), room)
        self.assertIsNone(chat.room_named("#nowhere"))

    def test_all_rooms_and_room_count_include_secret_rooms(self) -> None:
        chat = self.server.chat
        a, _ = self.session("alice")
        self.assertEqual((list(chat.all_rooms()), chat.room_count()), ([], 0))
        self.successResultOf(chat.join(a, "#open"))
        self.successResultOf(chat.join(a, "#hidden"))
        self.successResultOf(chat.change_modes(a, "#hidden", [("+s", None)]))
        self.assertEqual(sorted(r.name for r in chat.all_rooms()), ["#hidden", "#open"])
        self.assertEqual(chat.room_count(), 2)
        self.assertEqual([r["name"] for r in chat.room_list("bob")], ["#open"])

    def test_online_count_and_all_sessions_follow_attach_and_detach(self) -> None:
        chat = self.server.chat
        a, _ = self.session("alice")
        a2, _ = self.session("alice")
        b, _ = self.session("bob")
        self.assertEqual(chat.online_count(), 2)  # accounts online, not sessions
        self.assertEqual(set(chat.all_sessions()), {a, a2, b})
        chat.detach(a)
        chat.detach(b)
        self.assertEqual(chat.online_count(), 1)
        self.assertEqual(list(chat.all_sessions()), [a2])

    def test_presence_of_tells_away_and_last_seen_and_nothing_of_strangers(self) -> None:
        chat = self.server.chat
        a, _ = self.session("alice")
        self.assertIsNone(chat.presence_of("nobody"))
        chat.set_away(a, "lunch")
        state = chat.presence_of("ALICE")
        assert state is not None
        self.assertEqual((state.presence.value, state.away), ("away", "lunch"))
        chat.detach(a)
        state = chat.presence_of("alice")
        assert state is not None
        self.assertEqual((state.presence.value, state.away), ("offline", None))
        self.assertEqual(state.last_seen, chat.now())


# The same tests on the PostgreSQL store (tests/backends.py).
ServiceTestsOnPostgreSQL = on_postgresql(ServiceTests)
