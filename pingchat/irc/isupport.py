"""RPL_ISUPPORT: the limits the IRC gateway holds clients to, and how it says so."""

from __future__ import annotations

from pingchat.model import HISTORY_MAX, ROOM_FLAGS, ROOM_NAME_MAX, TOPIC_MAX

NICKLEN = 32
AWAYLEN = 300
KICKLEN = 300
MAX_TARGETS = 4  # of a PRIVMSG, NOTICE or TAGMSG
MAX_MODES = 10  # mode changes in one MODE line


def tokens(network: str) -> list[str]:
    """The RPL_ISUPPORT tokens; each one describes what the gateway really does."""
    return [
        f"AWAYLEN={AWAYLEN}",
        "CASEMAPPING=ascii",
        "CHANLIMIT=#:",
        f"CHANMODES=b,k,Hl,{''.join(sorted(ROOM_FLAGS))}",
        f"CHANNELLEN={ROOM_NAME_MAX}",
        "CHANTYPES=#",
        f"CHATHISTORY={HISTORY_MAX}",
        f"KICKLEN={KICKLEN}",
        f"MODES={MAX_MODES}",
        "MSGREFTYPES=msgid,timestamp",
        f"NETWORK={network}",
        f"NICKLEN={NICKLEN}",
        "PREFIX=(ov)@+",
        "STATUSMSG=",
        f"TARGMAX=PRIVMSG:{MAX_TARGETS},NOTICE:{MAX_TARGETS},JOIN:,PART:,"
        "KICK:,NAMES:1,WHOIS:1,LIST:",
        f"TOPICLEN={TOPIC_MAX}",
        f"USERLEN={NICKLEN}",
        "UTF8ONLY",
        "WHOX",
    ]

