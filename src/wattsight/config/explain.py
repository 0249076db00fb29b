"""pydantic's validation errors put in plain words, gathered into one :class:`ConfigError`."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from .locate import BARE_KEY, key_lines, locate

_KIND = {
    "float": "a number", "int": "a whole number", "bool": "a boolean",
    "string": "a string in quotes", "list": "a list, e.g. [\"a\", \"b\"]", "dict": "a table",
    "model": "a table", "path": "a path in quotes",
}
_BOUND = {"greater_than": "more than", "greater_than_equal": "at least", "less_than": "less than",
          "less_than_equal": "at most"}


@dataclass(frozen=True)
class Issue:
    """One problem found in a file: where (dotted key path), what, what was expected, a hint."""

    loc: tuple
    problem: str
    expected: str | None = None
    hint: str | None = None


def _described(expected: str, desc: str | None) -> str:
    if desc and expected == "a number" and desc.startswith("seconds"):
        return "a number of seconds" + desc[len("seconds"):].replace(";", ":", 1)
    return f"{expected}: {desc}" if desc else expected


def _unquote_hint(family: str, value) -> str | None:
    """For a quoted number or boolean, or a boolean written otherwise: how to write it instead."""
    if family == "bool":
        if isinstance(value, str) and value.strip() in ("true", "false"):
            return f"remove the quotes: {value.strip()}"
        return "write true or false" + (", without quotes" if isinstance(value, str) else "")
    if not isinstance(value, str) or family not in ("float", "int"):
        return None
    text = value.strip()
    try:
        int(text) if family == "int" else float(text)
    except ValueError:
        return None
    return f"remove the quotes: {text}"


#: Keys whose values are credentials: an error about them never repeats the value.
_SECRET_KEY = re.compile(r"password|passphrase|secret|token|community|auth_key|priv_key|credential", re.I)


class _Hidden:
    def __repr__(self) -> str:
        return "<the value, hidden>"


def translate(err: dict, model: type[BaseModel], base: tuple) -> Issue:
    """One pydantic error as an :class:`Issue` in plain words (a credential's value is never shown)."""
    if any(isinstance(p, str) and _SECRET_KEY.search(p) for p in err["loc"]):
        err = {**err, "input": _Hidden()}
    loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx") or {}
    info = model.model_fields.get(str(loc[0])) if loc else None
    desc = info.description if info else None
    loc = base + loc
    if kind == "extra_forbidden":
        known = list(model.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        return Issue(loc, "unknown key", "one of " + ", ".join(known),
                     f"did you mean {close[0]!r}?" if close else None)
    if kind == "missing":
        return Issue(loc, "missing", desc)
    if kind == "value_error":
        return Issue(loc, str(ctx.get("error", err["msg"])))
    if kind == "literal_error":
        return Issue(loc, f"{err['input']!r} is not allowed", "one of " + str(ctx.get("expected")))
    if kind in _BOUND:
        bound = next(iter(ctx.values()))
        return Issue(loc, f"{err['input']!r} is out of range", _described(f"{_BOUND[kind]} {bound}", desc))
    if kind in ("string_too_short", "too_short"):
        return Issue(loc, "is empty", _described("a value that is not empty", desc))
    family = kind.split("_")[0]
    if family in _KIND:
        return Issue(loc, f"{err['input']!r} is not {_KIND[family]}", _described(_KIND[family], desc),
                     _unquote_hint(family, err["input"]))
    return Issue(loc, err["msg"], desc)


def validate(model: type[BaseModel], data, base: tuple, issues: list, context: dict):
    """``model`` validated from ``data``, or None with its problems appended to ``issues``."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        issues.extend(translate(e, model, base) for e in exc.errors(include_url=False))
        return None


def dotted(loc: tuple) -> str:
    """A key path as written in the file: ``bus.window``, ``probes."lyon.t-7".nodes``, ``x[1]``."""
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            p = p if BARE_KEY.fullmatch(p) else f'"{p}"'
            out += f".{p}" if out else p
    return out


def as_error(issues: list[Issue], file: str, text: str) -> ConfigError:
    """One ConfigError for all ``issues``: one line each, in file order; ``.errors`` keeps them apart."""
    lines = key_lines(text)
    errs = [ConfigError(i.problem, file=file, line=locate(lines, i.loc), key=dotted(i.loc),
                        expected=i.expected, hint=i.hint) for i in issues]
    errs.sort(key=lambda e: e.line or 1 << 30)
    first = errs[0]
    combined = ConfigError(first.problem, file=file, line=first.line, key=first.key, expected=first.expected,
                           hint=first.hint)
    combined.args = ("\n".join(str(e) for e in errs),)
    combined.errors = errs
    return combined
