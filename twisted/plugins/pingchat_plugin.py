"""Registers ``twistd pingchat``; kept trivial so a failure here cannot break twistd."""

from twisted.application.service import ServiceMaker

pingchat = ServiceMaker(
    "pingchat",
    "pingchat.tap",
    "A chat server: native protocol over TLS, IRC gateway and SSH manhole.",
    "pingchat",
)
