"""Readable URL slugs from names ("Acme Corp" -> "acme-corp")."""

from __future__ import annotations

import re


def slugify(name: str, fallback_prefix: str) -> str:
    """Lowercase letters, digits and dashes, 2 to 50 long; short ones get a prefix."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50].strip("-")
    return slug if len(slug) >= 2 else f"{fallback_prefix}-{slug}".strip("-")
