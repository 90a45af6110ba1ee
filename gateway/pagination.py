"""Keyset pagination: `?limit=&cursor=` in, `{"items", "next_cursor"}` out."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import asyncpg
import msgspec
from aiohttp import web

from gateway import keys
from gateway.routing import convert
from libs.errors import ValidationFailed

T = TypeVar("T")


class PageQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50
    cursor: str | None = None


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    items: list[T]
    next_cursor: str | None = None


def page_query(request: web.Request) -> PageQuery:
    return convert(dict(request.query), PageQuery)


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """The (created_at, id) after which the page starts."""
    if cursor is None:
        return None
    try:
        at, _, last_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), last_id
    except ValueError:
        raise ValidationFailed("malformed cursor", "cursor") from None


def encode_cursor(created_at: datetime, last_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{last_id}".encode()).decode()


def page_of(items: list[T], rows: list[Any], limit: int, at: str = "created_at") -> Page[T]:
    """`rows` were fetched with limit + 1: one extra row means there is a next page."""
    if len(rows) > limit:
        last = rows[limit - 1]
        return Page(items=items[:limit], next_cursor=encode_cursor(last[at], last["id"]))
    return Page(items=items)


async def fetch_page(
    request: web.Request,
    sql: str,
    *args: Any,
    build: Callable[[asyncpg.Record], T],
    at: str = "created_at",
) -> Page[T]:
    """One page of `sql`, whose last three parameters are the cursor's timestamp,
    the cursor's id and the row limit (one more than the page, to see if there is
    a next page)."""
    query = page_query(request)
    after = decode_cursor(query.cursor)
    rows = await request.app[keys.POOL].fetch(
        sql, *args, after[0] if after else None, after[1] if after else "", query.limit + 1
    )
    return page_of([build(r) for r in rows], list(rows), query.limit, at)
