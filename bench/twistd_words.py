"""Run ``twistd -n words`` (Twisted's own chat server) as the benchmark's baseline.

    python -m bench.twistd_words IRC_PORT ACCOUNTS PASSWORD ROOM [LAG_FILE]

This is exactly ``twistd -n words --irc-port=tcp:IRC_PORT:interface=127.0.0.1
--group=ROOM --auth=memory:b0:PASSWORD:...`` with two things the command line
cannot do:

- ``--group`` is broken on Python 3 (``tap.Options.opt_group`` calls
  ``str.decode``), and ``twistd words`` creates no group on request, so the
  option is fixed here to append the name as it is;
- the ``--auth=memory:`` string for thousands of accounts is longer than one
  command-line argument may be, so it is built in this process.

With LAG_FILE, the same reactor lag probe pingchat uses is started, so both
servers' stalls are measured alike.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def _opt_group(self: Any, name: str) -> None:
    self["groups"].append(name)


def main(argv: list[str]) -> None:
    port, accounts, password, room = argv[:4]
    lag_file = argv[4] if len(argv) > 4 else None
    from twisted.words import tap

    tap.Options.opt_group = _opt_group  # type: ignore[method-assign]
    prefixes = ("b", "c", "s", "h")  # the load generator's account name prefixes
    users = ":".join(
        f"{prefix}{i}:{password}" for prefix in prefixes for i in range(int(accounts))
    )
    from twisted.internet import reactor

    if lag_file:
        from pingchat.chat.lagprobe import LagProbe, jsonl_report

        probe = LagProbe(reactor, jsonl_report(Path(lag_file)))  # type: ignore[arg-type]
        reactor.callWhenRunning(probe.startService)  # type: ignore[attr-defined]
    sys.argv = [
        "twistd", "-n", "--pidfile=", "words",
        f"--irc-port=tcp:{port}:interface=127.0.0.1",
        f"--group={room.lstrip('#')}",
        f"--auth=memory:{users}",
        "--hostname=words",
    ]
    from twisted.scripts.twistd import run

    run()


if __name__ == "__main__":
    main(sys.argv[1:])
