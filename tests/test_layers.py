"""The layers of ARCHITECTURE.md: every import of the package, lazy ones included, points down (or stays inside its
own layer package)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

# rank of each top-level part of lightning_privacy; a module may import only parts of a strictly lower rank
RANKS = {
    "errors": 0, "canonical": 0, "results": 0, "progress": 0,
    "data": 1,
    "models": 2,
    "privacy": 3, "signals": 3,
    "defenses": 4,
    "metrics": 5,
    "attacks": 6,
    "callbacks": 7,
    "tracking": 8,
    "reports": 9,
    "cli": 10,
    "sweep": 11,
}
# the console entry point (cli.main) hands `sweep` to the sweep package, which drives ordinary fits through the CLI
ENTRY_POINT_DISPATCH = {("cli", "sweep")}
PACKAGE = REPO / "lightning_privacy"


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        out |= {n.split(".")[1] for n in names if n.startswith("lightning_privacy.")}
    return out


def _modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE]


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(p) for p in _modules()}
    assert not parts - set(RANKS), f"add these to ARCHITECTURE.md and RANKS: {sorted(parts - set(RANKS))}"


def test_imports_only_point_down():
    upward = []
    for path in _modules():
        part = _part(path)
        for target in _imports(path) - {part}:
            if RANKS.get(target, 99) >= RANKS.get(part, -1) and (part, target) not in ENTRY_POINT_DISPATCH:
                upward.append(f"{path.relative_to(REPO)} imports lightning_privacy.{target}")
    assert not upward, "imports that do not point down:\n" + "\n".join(sorted(upward))


def test_the_checker_sees_a_lazy_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from lightning_privacy.cli import main\n    import lightning_privacy.tracking.publish\n")
    assert _imports(module) == {"cli", "tracking"}
