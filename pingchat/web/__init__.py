"""The browser door: ``twisted.web`` serving the web client, ``/ws`` and ``/irc``.

``/ws`` carries the native protocol and ``/irc`` IRC (the IRCv3 WebSocket
specification), each through the same protocol classes, factories, portal
and limits as the TCP doors; see ``docs/web.md``.
"""
