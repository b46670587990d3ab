"""Wording helpers shared by the messages of the CLI and the CNI plugin."""

from __future__ import annotations

from typing import Optional


def counted(count: int, noun: str, plural: Optional[str] = None) -> str:
    """Return ``count`` with the noun in the singular for 1 and the plural otherwise: '1 address', '2 addresses'.

    ``plural`` defaults to ``noun`` plus 's'.
    """
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {plural or noun + 's'}"
