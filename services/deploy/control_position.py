"""How far an agent has acted on the start, stop and restart requests in the stream.

Requests are events (`service.control_requested`, `service.instance_control_requested`);
an agent follows them with an ordered consumer. Its position is kept on disk after
each request is dealt with, and a restarted agent resumes from there: an agent that
was offline when a service was stopped or restarted catches up, in order, instead
of missing it.
"""

from __future__ import annotations

import json
from pathlib import Path


class ControlPosition:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.position = 0
        if path.exists():
            try:
                self.position = int(json.loads(path.read_text())["position"])
            except (ValueError, KeyError, TypeError):
                self.position = 0  # unreadable: start from new requests only

    def advance(self, seq: int) -> None:
        """Record that every request up to stream sequence `seq` has been dealt with."""
        if seq <= self.position:
            return
        self.position = seq
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"position": seq}))
        tmp.replace(self.path)
