"""Text a person reads in a terminal: columns that line up."""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

_NUMBER = re.compile(r"^([+-]?[\d.]+( ?[KMGT]?i?B|%|s)?|\?)$")


def table(rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None, indent: str = "") -> str:
    """Left-aligned columns; numbers in later columns right-aligned."""
    body = [[("" if c is None else str(c)) for c in row] for row in rows]
    if header:
        body.insert(0, list(header))
    if not body:
        return ""
    widths = [max(len(r[i]) for r in body if i < len(r)) for i in range(max(len(r) for r in body))]
    lines = []
    for row in body:
        cells = []
        for i, cell in enumerate(row):
            cells.append(cell.rjust(widths[i]) if i > 0 and _NUMBER.match(cell) else cell.ljust(widths[i]))
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines)
