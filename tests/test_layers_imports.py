"""The code's floors, read from its own imports: every import points down (or within its package)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module may import its own package and any package on a lower floor.
FLOORS = [
    ["factory.core"],
    ["devices"],
    ["factory.nas"],
    ["factory.training"],
    ["latency_tables", "factory.search"],  # peers: neither imports the other
    ["export"],
    ["factory.app"],
]
# The only files that turn a device name into a profile: the edges where users name things.
PROFILE_EDGES = {"factory/app/cli.py", "factory/app/api.py", "devices/profile.py"}


def floor_of(module: str) -> tuple[int, str] | None:
    for level, packages in enumerate(FLOORS):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return level, package
    return None


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports (at any depth: a deferred import points the same way), with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def upward_imports(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        module = ".".join(rel.with_suffix("").parts)
        own = floor_of(module)
        if own is None:
            continue
        for line, name in imports(path):
            target = floor_of(name)
            if target is None:
                continue
            if target[0] > own[0] or (target[0] == own[0] and target[1] != own[1]):
                found.append(f"{rel}:{line} ({own[1]}) imports {name} ({target[1]})")
    return sorted(set(found))


def profile_loads(root: Path) -> list[str]:
    found = []
    for package in ("factory", "devices", "latency_tables", "export"):
        for path in sorted((root / package).rglob("*.py")):
            rel = str(path.relative_to(root))
            if rel in PROFILE_EDGES:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == \
                        "load_profile":
                    found.append(f"{rel}:{node.lineno}")
    return found


def test_every_import_points_down():
    assert upward_imports(ROOT) == []


def test_profiles_are_resolved_only_at_the_edges():
    assert profile_loads(ROOT) == []


@pytest.mark.parametrize("lower, upper", [("factory/core/files.py", "factory.nas.space"),
                                          ("devices/host.py", "latency_tables.table"),
                                          ("latency_tables/table.py", "factory.search.strategies"),
                                          ("export/bundle.py", "factory.app.plots"),
                                          ("factory/nas/space.py", "factory.training.data")])
def test_an_upward_import_is_found(tmp_path, lower, upper):
    """The check fails on a copy of the tree with one upward import added."""
    for package in ("factory", "devices", "latency_tables", "export"):
        for path in (ROOT / package).rglob("*.py"):
            copy = tmp_path / path.relative_to(ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(path.read_text())
    target = tmp_path / lower
    target.write_text(target.read_text() + f"\n\ndef _late():\n    import {upper}  # noqa\n")
    found = upward_imports(tmp_path)
    assert len(found) == 1 and found[0].startswith(lower) and upper in found[0]


def test_a_profile_loaded_below_the_edge_is_found(tmp_path):
    target = tmp_path / "export" / "pipeline.py"
    for path in (ROOT / "export").rglob("*.py"):
        copy = tmp_path / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(path.read_text())
    target.write_text(target.read_text() + "\n\ndef _late(name):\n    return load_profile(name)\n")
    for package in ("factory", "devices", "latency_tables"):
        (tmp_path / package).mkdir(exist_ok=True)
    assert profile_loads(tmp_path) == ["export/pipeline.py:" + str(len(target.read_text().splitlines()) - 0)]
