"""Find drivers and consumers through entry points (the built-in ones are registered the same way)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from .errors import PluginError

DRIVERS = "wattsight.drivers"
CONSUMERS = "wattsight.consumers"


@cache
def _group(group: str) -> dict:
    return {ep.name: ep for ep in entry_points(group=group)}


def names(group: str = DRIVERS) -> list[str]:
    """The registered plugin names of a group, sorted."""
    return sorted(_group(group))


def load(name: str, group: str = DRIVERS):
    """The plugin class registered as ``name``; PluginError lists the known ones if absent."""
    eps = _group(group)
    if name not in eps:
        kind = "driver" if group == DRIVERS else "consumer"
        raise PluginError(
            f"no {kind} named {name!r}; known: {', '.join(sorted(eps)) or 'none'} "
            "(`wattsight plugins` lists them; is the package providing it installed?)"
        )
    try:
        return eps[name].load()
    except ImportError as exc:
        raise PluginError(f"{name}: cannot be loaded: {exc}") from exc


def describe(group: str = DRIVERS) -> list[tuple[str, str, str]]:
    """(name, module, first docstring line) of each plugin."""
    out = []
    for name, ep in sorted(_group(group).items()):
        try:
            doc = (ep.load().__doc__ or "").strip().splitlines()[0]
        except IndexError:
            doc = ""
        except (ImportError, AttributeError) as exc:
            doc = f"(cannot load: {exc})"
        out.append((name, ep.value, doc))
    return out
