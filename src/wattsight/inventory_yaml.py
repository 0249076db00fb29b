"""Reading YAML with the line of every key, and reporting problems at those lines.

PyYAML's composer keeps a mark (line, column) on every node; :func:`parse_yaml` builds plain
Python data from the node tree and records the line of each key path, and refuses duplicate
keys (which ``yaml.safe_load`` would silently keep the last of).  :class:`Source` turns
:class:`~wattsight.config.explain.Issue` lists into one ConfigError of ``file:line: key: ...``
lines, like the TOML configuration's errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from .config.explain import Issue, dotted
from .errors import ConfigError


@dataclass(frozen=True)
class _At(Issue):
    """An issue at a given line (a duplicate key: its own line, not the first one's)."""

    at: int | None = None


class Source:
    """The file an inventory came from and the line of each key path (for errors and comments)."""

    def __init__(self, path: str, lines: dict[tuple, int]) -> None:
        self.path, self.lines = path, lines

    def line(self, loc: tuple) -> int | None:
        """The line of ``loc``, or of its nearest enclosing key."""
        for end in range(len(loc), 0, -1):
            if tuple(loc[:end]) in self.lines:
                return self.lines[tuple(loc[:end])]
        return None

    def where(self, loc: tuple) -> str:
        line = self.line(loc)
        return f"{self.path}:{line}" if line else self.path

    def error(self, issues: list[Issue]) -> ConfigError:
        """One ConfigError listing ``issues`` in file order (``.errors`` keeps them apart)."""
        errs = [ConfigError(i.problem, file=self.path, line=getattr(i, "at", None) or self.line(i.loc), key=dotted(i.loc) or None,
                            expected=i.expected, hint=i.hint) for i in issues]
        errs.sort(key=lambda e: e.line or 0)
        first = errs[0]
        combined = ConfigError(first.problem, file=self.path, line=first.line, key=first.key,
                               expected=first.expected, hint=first.hint)
        combined.args = ("\n".join(str(e) for e in errs),)
        combined.errors = errs
        return combined


class _Reader:
    """Builds plain Python data from a composed YAML node, recording lines and duplicate keys."""

    def __init__(self) -> None:
        self.lines: dict[tuple, int] = {}
        self.issues: list[Issue] = []
        self.constructor = yaml.constructor.SafeConstructor()

    def value(self, node, loc: tuple):
        if isinstance(node, yaml.MappingNode):
            self.constructor.flatten_mapping(node)  # `<<: *defaults` merges
            out: dict = {}
            for knode, vnode in node.value:
                key = self.constructor.construct_object(knode, deep=True)
                key = str(key) if isinstance(key, (int, float)) and not isinstance(key, bool) else key
                if not isinstance(key, str):
                    self.issues.append(Issue(loc, f"the key {key!r} is not a name", "names as keys"))
                    continue
                if key in out:
                    self.issues.append(_At(loc + (key,), f"duplicate key (first at line {self.lines[loc + (key,)]})",
                                           hint="each name once: YAML would keep only the last one",
                                           at=knode.start_mark.line + 1))
                    continue
                self.lines[loc + (key,)] = knode.start_mark.line + 1
                out[key] = self.value(vnode, loc + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.lines[loc + (i,)] = item.start_mark.line + 1
                items.append(self.value(item, loc + (i,)))
            return items
        return self.constructor.construct_object(node, deep=True)


def parse_yaml(text: str, path: str) -> tuple[object, Source]:
    """The data of a YAML text and its :class:`Source`; a syntax error is a ConfigError with the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"YAML syntax error: {problem}", file=path, line=mark.line + 1 if mark else None,
                          hint="indent with spaces; a list item starts with '- '; quote values holding ': '"
                          ) from None
    reader = _Reader()
    data = {} if node is None else reader.value(node, ())
    source = Source(path, reader.lines)
    if reader.issues:
        raise source.error(reader.issues)
    return data, source
