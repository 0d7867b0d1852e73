"""The rule of who may import whom (README, "How it is built"), read from the code's own imports.

Each package of ``monitor`` is one box of the architecture and imports only the boxes below it;
so there is no import circle between boxes, and a newcomer can read the core from the bottom up.
Imports under ``if TYPE_CHECKING:`` count too: a type that names a box above is a dependency on it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers import REPO

# Lowest first. The vocabulary shares one rank; within it errors < units < sample < logs (checked below).
LAYERS = [
    {"errors", "units", "text", "sample", "logs"},
    {"kernel"},
    {"config"},
    {"probes"},
    {"history"},
    {"policy"},
    {"pagecache"},
    {"reclaim"},
    {"notify", "control"},
    {"watch", "service"},
    {"cli"},
]
RANK = {box: i for i, boxes in enumerate(LAYERS) for box in boxes}
VOCABULARY_ORDER = ["errors", "units", "text", "sample", "logs"]
# The one lazy door from the core to the dashboard: `vmmemctl tui` starts it (tests/test_headless.py
# proves importing monitor.cli.main loads no Textual).
TUI_DOOR = ("cli/main.py", "tui.app")


def box_of(path: Path) -> str:
    return path.relative_to(REPO / "monitor").with_suffix("").parts[0]


def imports_of(source: str) -> list[tuple[int, str]]:
    """Every module an import statement names (``from monitor import x`` -> ``monitor.x``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "monitor":
                found += [(node.lineno, f"monitor.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def core_files() -> list[Path]:
    return sorted(p for p in (REPO / "monitor").rglob("*.py") if p.name != "__main__.py")


def test_every_box_has_a_rank():
    boxes = {box_of(p) for p in core_files()} - {"__init__"}
    assert boxes <= set(RANK), f"a box this test does not know: {sorted(boxes - set(RANK))}"


def violations(path: Path, source: str | None = None) -> list[str]:
    box = box_of(path)
    if box == "__init__":
        return []
    wrong = []
    for line, module in imports_of(path.read_text() if source is None else source):
        parts = module.split(".")
        if parts[0] in ("tui", "textual", "rich"):
            if (path.relative_to(REPO / "monitor").as_posix(), module) != TUI_DOOR:
                wrong.append(f"line {line}: {module} (the core never imports the TUI stack)")
            continue
        if parts[0] != "monitor" or len(parts) < 2 or parts[1] in ("__version__", box):
            continue
        target = parts[1]
        if target not in RANK:
            wrong.append(f"line {line}: {module} (no such box)")
        elif RANK[target] > RANK[box] or (RANK[target] == RANK[box] and box not in VOCABULARY_ORDER):
            wrong.append(f"line {line}: {box} -> {target} (a box above or beside it)")
        elif box in VOCABULARY_ORDER and target in VOCABULARY_ORDER and \
                VOCABULARY_ORDER.index(target) > VOCABULARY_ORDER.index(box):
            wrong.append(f"line {line}: {box} -> {target} (the vocabulary's order is {' < '.join(VOCABULARY_ORDER)})")
    return wrong


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_a_box_imports_only_the_boxes_below_it(path):
    assert violations(path) == []


@pytest.mark.parametrize("added, expected", [
    ("from monitor.watch.recorder import Recorder", "kernel -> watch"),
    ("from monitor import reclaim", "kernel -> reclaim"),
    ("import textual.app", "textual.app (the core never imports the TUI stack)"),
    ("from monitor.kernel.windows import DISTRO_NAME", None),  # its own box
    ("from monitor.units import format_bytes", None),  # the vocabulary, below
])
def test_the_check_finds_a_wrong_import(added, expected):
    """The rule's own test: a checker that finds nothing would prove nothing."""
    path = REPO / "monitor" / "kernel" / "procfs.py"
    found = violations(path, path.read_text() + "\n" + added + "\n")
    assert [w for w in found if expected in w] if expected else found == []
