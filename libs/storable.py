"""Input that every store holds faithfully: the rules, checked at each door.

PostgreSQL's `text` and `jsonb` cannot hold U+0000, and UTF-8 (so JSON on the
wire, NATS payloads and PostgreSQL alike) cannot hold a lone surrogate
(U+D800..U+DFFF). A document nested deeper than `MAX_DEPTH` is refused too:
past about a thousand levels the encoders that write read models give up. Input
breaking a rule is refused before anything is appended, because events are
forever: `check` and `check_json` name the first offending field. Events
stored before these rules existed are read through `scrub_json`, which
replaces each offending character by U+FFFD the same way every time, so a
replayed read model equals the live one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from libs.errors import ValidationFailed

# Characters no store keeps: NUL and the surrogate code points (in a Python
# str a surrogate is always a lone one; a valid pair is a single code point).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# How those characters can be spelt in JSON: only as \u escapes (msgspec and
# every conforming encoder escape control characters). A match may be a false
# alarm (an escaped backslash before "u0000"); it only costs a closer look.
_SUSPECT_JSON = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
REPLACEMENT = "\ufffd"
# Deeper than any configuration a person writes; far below where encoders recurse out.
MAX_DEPTH = 32


def unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "must not contain NUL (U+0000)"
    return f"must not contain a lone surrogate (U+{ord(char):04X})"


def find_unstorable(value: Any, path: str = "$") -> tuple[str, str] | None:
    """The path and reason of the first string in `value` (keys included) that
    cannot be stored, or None. Walks dicts, lists, tuples and msgspec Structs."""
    return _find(value, path, 0)


def _find(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    if isinstance(value, str):
        reason = unstorable(value)
        return (path, reason) if reason else None
    if depth > MAX_DEPTH:
        return (path, f"is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, msgspec.Struct):
        value = msgspec.structs.asdict(value)
    if isinstance(value, Mapping):
        for key, item in value.items():
            reason = unstorable(key) if isinstance(key, str) else None
            if reason:
                return (f"{path}.{_printable(key)}", f"key {reason}")
            found = _find(item, f"{path}.{key}", depth + 1)
            if found:
                return found
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            found = _find(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
    return None


def _printable(key: str) -> str:
    # The field name goes back to the client and into logs: not the bad character.
    return _UNSTORABLE.sub(REPLACEMENT, key)


def check(value: Any, path: str = "$", **details: Any) -> None:
    """Raise a 422 `ValidationFailed` naming the first unstorable string in `value`."""
    found = find_unstorable(value, path)
    if found is not None:
        field, reason = found
        raise ValidationFailed(f"{field} {reason}", field, **details)


def check_json(data: bytes, path: str = "$") -> None:
    """`check` for a JSON document (a malformed one is left to its decoder); cheap
    when it has no `\\u` escape that could spell an unstorable character and
    too few brackets to be too deep (nearly always)."""
    if _SUSPECT_JSON.search(data) is None and data.count(b"{") + data.count(b"[") <= MAX_DEPTH:
        return
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValidationFailed(f"{path} is nested deeper than {MAX_DEPTH} levels", path) from None
    except ValueError:
        return  # malformed: the decoder that follows says so
    check(value, path)


def scrub(text: str) -> str:
    """`text` with each unstorable character replaced by U+FFFD."""
    return _UNSTORABLE.sub(REPLACEMENT, text)


def scrub_json(data: bytes) -> bytes:
    """A JSON document whose strings can all be stored: unchanged (the same
    object) when nothing needs replacing, as for every event appended since
    input is checked at the door."""
    if _SUSPECT_JSON.search(data) is None:
        return data
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return data
    if find_unstorable(value) is None:
        return data
    return json.dumps(_scrubbed(value), ensure_ascii=False, separators=(",", ":")).encode()


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    return value
