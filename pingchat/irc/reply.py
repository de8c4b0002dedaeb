"""The lines answering one IRC command, labelled as IRCv3 ``labeled-response`` asks."""

from __future__ import annotations

from collections.abc import Mapping

from pingchat.irc.base import IRCBase


class Reply:
    """The lines answering one command.

    Without a label they are written at once. With a ``label`` tag (and the
    ``labeled-response`` capability) they are held until the command is done
    and then sent as one labelled unit: an ``ACK``, one tagged line, or a
    ``labeled-response`` batch.
    """

    def __init__(self, proto: IRCBase, label: str | None) -> None:
        self.proto = proto
        self.label = label
        self.lines: list[tuple[dict[str, str], str]] = []
        self.finished = False

    def send(self, line: str, tags: Mapping[str, str] | None = None) -> None:
        if self.label is None or self.finished:
            self.proto.write(line, tags)
        else:
            self.lines.append((dict(tags or {}), line))

    def num(self, code: str, *params: str) -> None:
        self.send(self.proto.numeric(code, *params))

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.label is None:
            return
        proto, label, lines = self.proto, self.label, self.lines
        if not lines:
            proto.write(f":{proto.server} ACK", {"label": label})
            return
        if len(lines) == 1 or "batch" not in proto.caps:
            first_tags, first = lines[0]
            proto.write(first, {"label": label, **first_tags})
            for tags, line in lines[1:]:
                proto.write(line, tags)
            return
        first_tags, first = lines[0]
        head, tail = _verb(first), _verb(lines[-1][1])
        if (
            len(head) > 1
            and head[0] == "BATCH"
            and head[1].startswith("+")
            and tail[:2] == ["BATCH", "-" + head[1][1:]]
            and "batch" not in first_tags
        ):
            # The answer is already exactly one batch: label it directly.
            proto.write(first, {"label": label, **first_tags})
            for tags, line in lines[1:]:
                proto.write(line, tags)
            return
        ref = proto.new_batch_id()
        proto.write(f":{proto.server} BATCH +{ref} labeled-response", {"label": label})
        for tags, line in lines:
            proto.write(line, {"batch": ref, **tags} if "batch" not in tags else tags)
        proto.write(f":{proto.server} BATCH -{ref}")


def _verb(line: str) -> list[str]:
    """The command and first parameter of a formatted line, without its source."""
    words = line.split(" ", 3)
    return words[1:3] if words and words[0].startswith(":") else words[:2]
