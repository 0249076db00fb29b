"""``wattsight record -- <command>`` and ``wattsight report`` (in progress)."""

from __future__ import annotations


def add_commands(sub) -> None:
    """Add the record and report verbs to the main parser's subparsers."""
