"""A tiny path language for JSON replies: dotted keys and ``[index]``, e.g. ``data.outlets[3].watts``.

Enough for meters that answer one JSON document, no more: a path is a chain of object keys
(``a.b``), list indexes (``[3]``, ``[-1]`` for the last item) and quoted keys for names that hold
a dot or a bracket (``["power.total"]``).  A leading ``$`` or ``$.`` (JSONPath habit) is allowed.

:func:`parse` checks a path once (at configuration time); :func:`get` follows it in a document
and, when a step is missing, raises :class:`PathMissing` saying where it stopped and what exists
there, so that an error message can show the user the keys to choose from.
"""

from __future__ import annotations

import json
import re
from typing import Any

Step = str | int

_TOKEN = re.compile(r"""
      \[\s*(?P<index>-?\d+)\s*\]                        # [3]
    | \[\s*(?P<quoted>"(?:[^"\\]|\\.)*"|'[^']*')\s*\]    # ["a.b"] or ['a.b']
    | (?P<dot>\.)?(?P<key>[^.\[\]]+)                     # key or .key
""", re.VERBOSE)


class PathMissing(LookupError):
    """A path step that the document does not have."""

    def __init__(self, path: str, at: str, step: Step, found: str) -> None:
        self.path, self.at, self.step, self.found = path, at, step, found
        where = f"at {at!r}" if at else "at the top"
        want = f"index [{step}]" if isinstance(step, int) else f"key {step!r}"
        super().__init__(f"{path}: no {want} {where} ({found})")


def parse(path: str) -> tuple[Step, ...]:
    """The steps of ``path``; ValueError if it is not a valid path."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:].removeprefix(".")
    if not text:
        raise ValueError(f"path {path!r} is empty (expected e.g. data.outlets[3].watts)")
    steps: list[Step] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or (m.group("key") is not None and steps and not m.group("dot")) \
                or (m.group("dot") and not steps):
            raise ValueError(f"path {path!r}: cannot read {text[pos:]!r} (expected keys joined by '.' "
                             "and [index], e.g. data.outlets[3].watts)")
        if m.group("index") is not None:
            steps.append(int(m.group("index")))
        elif m.group("quoted") is not None:
            q = m.group("quoted")
            steps.append(json.loads(q) if q.startswith('"') else q[1:-1])
        else:
            steps.append(m.group("key").strip())
        pos = m.end()
    return tuple(steps)


def render(steps: tuple[Step, ...]) -> str:
    """The path text of ``steps`` (inverse of :func:`parse`)."""
    out = ""
    for s in steps:
        if isinstance(s, int):
            out += f"[{s}]"
        elif re.fullmatch(r"[^.\[\]\s]+", s):
            out += ("." if out else "") + s
        else:
            out += f"[{json.dumps(s)}]"
    return out


def describe(node: Any) -> str:
    """What is at a place in the document, for error messages."""
    if isinstance(node, dict):
        keys = list(node)
        shown = ", ".join(repr(k) for k in keys[:20]) + (", ..." if len(keys) > 20 else "")
        return f"an object with keys {shown}" if keys else "an empty object"
    if isinstance(node, list):
        return f"a list of {len(node)} items" + (f", [0] to [{len(node) - 1}]" if node else "")
    if node is None:
        return "null"
    kind = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(type(node), "a value")
    return f"{kind}, {json.dumps(node)[:80]}"


def get(doc: Any, steps: tuple[Step, ...], path: str | None = None) -> Any:
    """The value at ``steps`` in ``doc``; :class:`PathMissing` names the first step that fails."""
    node = doc
    for i, step in enumerate(steps):
        if isinstance(step, int):
            ok = isinstance(node, list) and -len(node) <= step < len(node)
        else:
            ok = isinstance(node, dict) and step in node
        if not ok:
            raise PathMissing(path or render(steps), render(steps[:i]), step, "there is " + describe(node))
        node = node[step]
    return node
