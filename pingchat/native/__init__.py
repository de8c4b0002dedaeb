"""The native PingChat protocol: JSON lines over TLS."""
