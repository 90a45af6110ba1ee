"""What differs between a desired and an actual value, as JSON pointers (RFC 6901).

Pure. A difference names the place (`/ingress/0/port`), what was expected and
what was found. Lists are compared by position unless the caller says the list
at that place is a set (security-group rules, tags as a list, SANs): then
members are compared by their canonical JSON, order never matters, and a
difference is a member missing or unexpected (its pointer ends in `/-`, the
value being the member). Keys absent on one side differ with `None` on it:
`expected: None` means "not declared", `actual: None` "not there". What a
pointer pattern ignores is left out before anything is reported.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

_canonical = msgspec.json.Encoder(order="sorted")


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    pointer: str
    expected: Any = None
    actual: Any = None


def escape(token: str) -> str:
    """One reference token of a JSON pointer (`~` and `/` escaped, RFC 6901 section 3)."""
    return token.replace("~", "~0").replace("/", "~1")


def canonical(value: Any) -> bytes:
    """The value's JSON with sorted keys: equal values, equal bytes."""
    return _canonical.encode(value)


def _tokens(pointer: str) -> list[str]:
    return pointer.split("/")[1:] if pointer else []


def _fits(tokens: Sequence[str], pattern: Sequence[str]) -> bool:
    return len(tokens) == len(pattern) and all(
        fnmatch.fnmatchcase(t, p) for t, p in zip(tokens, pattern, strict=True)
    )


def names(pattern: str, pointer: str) -> bool:
    """Whether `pattern` names exactly this place (`*` stands for one token or part of one)."""
    return _fits(_tokens(pointer), _tokens(pattern))


def covers(pattern: str, pointer: str) -> bool:
    """Whether the place is the one `pattern` names or inside it (a final `**` says the
    same explicitly): `/tags` covers `/tags/env`, `/ingress/*/description` covers
    `/ingress/3/description`."""
    wanted = [t for t in _tokens(pattern) if t != "**"]
    tokens = _tokens(pointer)
    return len(tokens) >= len(wanted) and _fits(tokens[: len(wanted)], wanted)


def matches(pointer: str, patterns: Iterable[str]) -> bool:
    return any(covers(pattern, pointer) for pattern in patterns)


def diff(
    expected: Any,
    actual: Any,
    *,
    sets: Iterable[str] = (),
    ignore: Iterable[str] = (),
) -> list[Difference]:
    """Every difference, in a stable order (by pointer). `sets`: pointer patterns of the
    lists compared as sets; `ignore`: pointer patterns left out."""
    set_patterns, ignored = tuple(sets), tuple(ignore)
    found: list[Difference] = []
    _walk("", expected, actual, set_patterns, found)
    kept = [d for d in found if not (ignored and matches(d.pointer, ignored))]
    return sorted(kept, key=lambda d: (d.pointer, canonical(d.expected), canonical(d.actual)))


def _walk(
    pointer: str, expected: Any, actual: Any, sets: tuple[str, ...], found: list[Difference]
) -> None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual), key=str):
            _walk(
                f"{pointer}/{escape(str(key))}",
                expected.get(key),
                actual.get(key),
                sets,
                found,
            )
        return
    if isinstance(expected, list) and isinstance(actual, list):
        if _is_set_place(pointer, sets):
            _set_difference(pointer, expected, actual, found)
            return
        for index in range(max(len(expected), len(actual))):
            _walk(
                f"{pointer}/{index}",
                expected[index] if index < len(expected) else None,
                actual[index] if index < len(actual) else None,
                sets,
                found,
            )
        return
    if _same(expected, actual):
        return
    found.append(Difference(pointer=pointer or "", expected=expected, actual=actual))


def _is_set_place(pointer: str, sets: tuple[str, ...]) -> bool:
    return any(names(pattern, pointer) for pattern in sets)


def _set_difference(
    pointer: str, expected: list[Any], actual: list[Any], found: list[Difference]
) -> None:
    wanted = {canonical(member): member for member in expected}
    present = {canonical(member): member for member in actual}
    for key in sorted(wanted.keys() - present.keys()):
        found.append(Difference(pointer=f"{pointer}/-", expected=wanted[key], actual=None))
    for key in sorted(present.keys() - wanted.keys()):
        found.append(Difference(pointer=f"{pointer}/-", expected=None, actual=present[key]))


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return float(expected) == float(actual)  # 30 and 30.0 are one size
    return bool(expected == actual)
