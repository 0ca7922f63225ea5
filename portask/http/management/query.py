"""The list query parameters, as RabbitMQ 3.10's rabbit_mgmt_util reads them.

Order of operations, as there: ``columns`` picks fields (dotted paths reach into
nested objects), then the list is sorted (``sort`` first, then the resource's default
sort keys; ``sort_reverse=true`` reverses), then, only when ``page`` is given, the
``name`` filter (a case-insensitive substring, or a case-insensitive regular
expression with ``use_regex=true``) and the page (``page_size`` 1..500, default 100)
are applied and the answer becomes ``{"items": [...], "page": ..., ...}``.
"""

from __future__ import annotations

import re
from typing import Any

from portask.http.management.api import bad_request

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
MAX_FILTER_LENGTH = 4096  # a regex longer than this is refused, as RabbitMQ does

Item = dict[str, Any]


def columns(query: dict[str, str]) -> list[list[str]] | None:
    raw = query.get("columns")
    if raw is None:
        return None
    return [c.split(".") for c in raw.split(",") if c]


def pick(item: Any, cols: list[list[str]] | None) -> Any:
    """Keep only the requested columns (``a.b`` keeps b inside a)."""
    if cols is None:
        return item
    if isinstance(item, list):
        return [pick(i, cols) for i in item]
    if not isinstance(item, dict):
        return item
    out: dict[str, Any] = {}
    for key, value in item.items():
        wanted = [c for c in cols if c[0] == key]
        if not wanted:
            continue
        if any(len(c) == 1 for c in wanted):
            out[key] = value
        else:
            out[key] = pick(value, [c[1:] for c in wanted])
    return out


def _rank(value: Any) -> tuple[int, Any]:
    """Erlang's term order, which RabbitMQ sorts by: number < atom < map < list < binary.

    JSON booleans and null are atoms there (false < null < true by name).
    """
    if isinstance(value, bool):
        return (1, "true" if value else "false")
    if value is None:
        return (1, "null")
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, dict):
        return (2, sorted((str(k), _rank(v)) for k, v in value.items()))
    if isinstance(value, list):
        return (3, [_rank(v) for v in value])
    return (4, str(value).encode())


def _dotted(item: Item, key: str) -> Any:
    value: Any = item
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(value, dict) or part not in value:
            # A missing leaf sorts as 0, a missing branch as [] (RabbitMQ's defaults).
            return 0 if i == len(parts) - 1 else []
        value = value[part]
    return value


def _sort_key(item: Item, keys: list[str]) -> list[tuple[int, Any]]:
    # Names and vhosts (every list's default keys) are strings: rank them inline, which
    # halves the sort of a thousand-queue list; anything else goes through _rank.
    out = []
    for key in keys:
        value = item.get(key, 0) if "." not in key else _dotted(item, key)
        out.append((4, value.encode()) if type(value) is str else _rank(value))
    return out


def _pagination(query: dict[str, str]) -> tuple[int, int] | None:
    page_raw = query.get("page")
    if page_raw is None:
        return None
    size_raw = query.get("page_size")
    try:
        page = int(page_raw)
        size = int(size_raw) if size_raw is not None else DEFAULT_PAGE_SIZE
    except ValueError:
        raise bad_request(f"Invalid pagination parameters: page number {page_raw}, "
                          f"page size {size_raw}") from None
    if page <= 0 or size <= 0 or size > MAX_PAGE_SIZE:
        raise bad_request(f"Invalid pagination parameters: page number {page}, "
                          f"page size {size}")
    return page, size


def _name_filter(query: dict[str, str]) -> Any:
    name = query.get("name")
    if not name:
        return None
    if query.get("use_regex") == "true":
        if len(name) > MAX_FILTER_LENGTH:
            raise bad_request("name filter regex is too long")
        try:
            pattern = re.compile(name, re.IGNORECASE)
        except re.error:
            return lambda _value: False  # RabbitMQ: a regex that does not compile matches nothing
        return lambda value: pattern.search(value) is not None
    lowered = name.lower()
    return lambda value: lowered in value.lower()


def shape(items: list[Item], query: dict[str, str], default_sort: list[str]) -> Any:
    """Apply columns, sort, sort_reverse, name/use_regex and page/page_size."""
    pagination = _pagination(query)
    name_filter = _name_filter(query) if pagination is not None else None
    cols = columns(query)
    picked = [pick(item, cols) for item in items]
    sort = query.get("sort")
    keys = list(dict.fromkeys(([sort] if sort else []) + default_sort))
    if keys:
        picked.sort(key=lambda item: _sort_key(item, keys))
    if query.get("sort_reverse") == "true":
        picked.reverse()
    if pagination is None:
        return picked
    page, size = pagination
    # The filter reads the original names: "columns" may have dropped the field.
    if name_filter is not None:
        filtered = [p for p in picked
                    if isinstance(p.get("name", None), str) and name_filter(p["name"])]
        if cols is not None and not any(c[0] == "name" for c in cols):
            filtered = []  # RabbitMQ filters the picked items, which have no name
    else:
        filtered = picked
    offset = (page - 1) * size
    if offset > len(filtered):
        raise bad_request(f"Page out of range, page: {page} page size: {size}, "
                          f"len: {len(filtered)}")
    page_items = filtered[offset:offset + size]
    return {
        "filtered_count": len(filtered),
        "item_count": len(page_items),
        "items": page_items,
        "page": page,
        "page_count": (len(filtered) + size - 1) // size,
        "page_size": size,
        "total_count": len(picked),
    }
