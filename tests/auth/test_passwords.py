"""bcrypt's worker threads run at a lower priority than the reactor's."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase


class BackgroundPriorityTests(SynchronousTestCase):
    def test_bcrypt_threads_run_below_the_reactor_priority(self) -> None:
        import threading

        from pingchat.auth.passwords import BACKGROUND_NICENESS, in_background

        def niceness() -> int:
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        mine = niceness()
        seen: list[int] = []
        # A thread of its own, as the bcrypt pool's are: the test's thread keeps its priority.
        worker = threading.Thread(target=lambda: seen.append(in_background(niceness)))
        worker.start()
        worker.join()
        self.assertEqual(seen, [min(mine + BACKGROUND_NICENESS, 19)])
        self.assertEqual(niceness(), mine)
