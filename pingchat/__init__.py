"""pingchat: a self-hosted chat server built on Twisted."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
