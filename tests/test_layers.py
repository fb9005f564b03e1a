"""The dependency rule of docs/architecture.md: a package imports only packages below it.

    cli  >  sim  >  streams  >  models  >  preagg, detectors  >  records

``preagg`` and ``detectors`` are pure cores side by side (neither imports the other); ``records`` imports
nothing of the project. Every import statement counts, also the ones inside functions (a lazy import
is still a dependency). ``benchmarks`` and ``tests`` sit on top and may import anything.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RANK = {"records": 0, "preagg": 1, "detectors": 1, "models": 2, "streams": 3, "sim": 4, "cli": 5}


CYTHON_IMPORT = re.compile(r"^\s*(?:from\s+(\.*)([\w.]*)\s+c?import|c?import\s+([\w.]+))", re.M)


def _package(module: str) -> str | None:
    """The project package a module path names (``patrol.models.pool`` and ``models.pool`` alike)."""
    parts = module.split(".")
    if parts[0] == "patrol" and len(parts) > 1:
        parts = parts[1:]
    return parts[0] if parts[0] in RANK else None


def project_imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, project package) of every import in a module, relative imports resolved."""
    found = []
    if path.suffix == ".pyx":  # Cython is not Python syntax: its import lines are read as text
        text = path.read_text()
        for m in CYTHON_IMPORT.finditer(text):
            name = package if m.group(1) else _package(m.group(2) or m.group(3))
            if name:
                found.append((text.count("\n", 0, m.start()) + 1, name))
        return found
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names = [package]
            elif node.module == "patrol":  # from patrol import detectors
                names = [alias.name for alias in node.names]
            else:
                names = [node.module or ""]
        else:
            continue
        found += [(node.lineno, pkg) for pkg in map(_package, names) if pkg]
    return found


def upward_imports(root: Path = REPO) -> list[str]:
    bad = []
    for package, rank in RANK.items():
        for path in sorted((root / package).rglob("*.py")) + sorted((root / package).rglob("*.pyx")):
            for line, target in project_imports(path, package):
                same_level_other = RANK[target] == rank and target != package
                if RANK[target] > rank or same_level_other:
                    bad.append(f"{path.relative_to(root)}:{line} ({package}) imports {target}")
    return bad


def test_no_package_imports_a_higher_layer():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The rule can fail: a pure core that imports the Kafka layer is reported, lazy imports included."""
    for package in RANK:
        (tmp_path / package).mkdir()
    (tmp_path / "detectors" / "leaky.py").write_text("def f():\n    from streams.topics import x\n")
    (tmp_path / "preagg" / "peer.py").write_text("import detectors\n")
    (tmp_path / "models" / "ok.py").write_text("from records import series_key\nfrom . import sibling\n"
                                               "from patrol.detectors import Result\n")
    (tmp_path / "records" / "up.py").write_text("from patrol import cli\n")
    (tmp_path / "preagg" / "_loop.pyx").write_text("cimport cython\nfrom models.pool import SeriesPool\n")
    assert upward_imports(tmp_path) == ["records/up.py:1 (records) imports cli",
                                        "preagg/peer.py:1 (preagg) imports detectors",
                                        "preagg/_loop.pyx:2 (preagg) imports models",
                                        "detectors/leaky.py:2 (detectors) imports streams"]


@pytest.mark.parametrize("package", sorted(RANK))
def test_every_layer_exists(package):
    assert (REPO / package / "__init__.py").is_file()
