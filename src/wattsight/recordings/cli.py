"""``wattsight jobs ...`` (in progress)."""

from __future__ import annotations


def add_commands(sub) -> None:
    """Add the jobs verbs to the main parser's subparsers."""
