"""An instance's output file: read line by line as it grows, rotated when it is large."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# An output file is rotated (one old generation kept) when an instance (re)starts past this.
ROTATE_BYTES = 16 << 20


class LogTail:
    """New complete lines of a log file, read from where the last read stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: int | None = None
        self._partial = b""
        self._pending: list[str] = []

    def reopen(self) -> None:
        # Only what is written from now on is news; older output was delivered (or is history).
        self.close()
        self._file = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o600)
        os.lseek(self._file, 0, os.SEEK_END)

    def flush_into_buffer(self) -> None:
        # Before a restart rotates the file, keep what the dead process wrote last,
        # an unfinished last line included: nothing will complete it now.
        self._pending.extend(self._read())
        if self._partial:
            self._pending.append(self._partial.decode(errors="replace"))
            self._partial = b""

    def read_lines(self) -> list[str]:
        lines, self._pending = [*self._pending, *self._read()], []
        return lines

    def _read(self) -> list[str]:
        if self._file is None:
            return []
        data = self._partial
        while chunk := os.read(self._file, 1 << 16):
            data += chunk
        *complete, self._partial = data.split(b"\n")
        return [line.decode(errors="replace").rstrip("\r") for line in complete]

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None
        self._partial = b""


def rotate(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > ROTATE_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
