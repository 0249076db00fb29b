"""Locating keys in a TOML text: tomllib gives no line numbers, errors need them."""

from __future__ import annotations

import re

#: A bare TOML key (a quoted one may hold anything).
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(s: str, i: int) -> tuple[list[str], int]:
    """Parse a dotted TOML key at ``s[i:]``; returns its parts and the index after it."""
    parts: list[str] = []
    while True:
        while i < len(s) and s[i] in " \t":
            i += 1
        if i < len(s) and s[i] in "\"'":
            q, j = s[i], i + 1
            while j < len(s) and s[j] != q:
                j += 2 if q == '"' and s[j] == "\\" else 1
            parts.append(s[i + 1:j].replace('\\"', '"'))
            i = j + 1
        else:
            m = BARE_KEY.match(s, i)
            if not m:
                return parts, i
            parts.append(m.group())
            i = m.end()
        while i < len(s) and s[i] in " \t":
            i += 1
        if i < len(s) and s[i] == ".":
            i += 1
            continue
        return parts, i


def _scan_inline(s: str, i: int, prefix: tuple, lineno: int, lines: dict) -> None:
    """Record the keys of an inline table ``{a = 1, b = {c = 2}}`` whose body starts at ``s[i]``."""
    stack, expect_key, depth = [prefix], True, 0
    while i < len(s) and stack:
        c = s[i]
        if c in " \t" or (expect_key and c == ","):
            i += 1
        elif c == "}" and not depth:
            stack.pop()
            expect_key, i = False, i + 1
        elif expect_key:
            parts, i = _parse_key(s, i)
            if not parts or i >= len(s) or s[i] != "=":
                return
            key = stack[-1] + tuple(parts)
            lines.setdefault(key, lineno)
            i += 1
            while i < len(s) and s[i] in " \t":
                i += 1
            expect_key = i < len(s) and s[i] == "{"
            if expect_key:
                stack.append(key)
                i += 1
        elif c in "\"'":
            j = s.find(c, i + 1)
            while c == '"' and j > 0 and s[j - 1] == "\\":
                j = s.find(c, j + 1)
            i = len(s) if j < 0 else j + 1
        else:
            depth += (c == "[") - (c == "]")
            expect_key = c == "," and not depth
            i += 1


def _record(lines: dict, key: tuple, n: int) -> None:
    for end in range(1, len(key) + 1):  # [a.b.c] also defines a and a.b
        lines.setdefault(key[:end], n)


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each dotted key (and table) of a TOML text to the 1-based line defining it."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    counts: dict[tuple[str, ...], int] = {}
    ml = None  # the closing delimiter of a multi-line string we are inside
    depth = 0  # bracket depth of a multi-line array
    for n, line in enumerate(text.splitlines(), 1):
        if ml:
            if ml in line:
                ml = None
            continue
        s = line.strip()
        if depth:
            depth = max(0, depth + s.count("[") - s.count("]"))
            continue
        if not s or s.startswith("#"):
            continue
        if s.startswith("["):
            double = s.startswith("[[")
            parts, _ = _parse_key(s, 2 if double else 1)
            table = tuple(parts)
            if double:
                counts[table] = counts.get(table, -1) + 1
                table += (str(counts[table]),)
            _record(lines, table, n)
            continue
        parts, i = _parse_key(s, 0)
        if not parts or i >= len(s) or s[i] != "=":
            continue
        key = table + tuple(parts)
        _record(lines, key, n)
        value = s[i + 1:].lstrip()
        for delim in ('"""', "'''"):
            if value.startswith(delim) and value.count(delim) == 1:
                ml = delim
        if value.startswith("{"):
            _scan_inline(value, 1, key, n, lines)
        elif value.startswith("["):
            depth = max(0, value.split("#")[0].count("[") - value.split("#")[0].count("]"))
    return lines


def locate(lines: dict[tuple[str, ...], int], loc: tuple) -> int | None:
    """The line of ``loc``, or of its nearest enclosing key or table that is in the text."""
    loc = tuple(str(p) for p in loc)
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
