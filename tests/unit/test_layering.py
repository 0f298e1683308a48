"""The import structure of shared/ and functions/: no circle, no upward import, handlers import only shared.

The layers are written down in ``shared/__init__.py`` and in the README's layout table. Every import counts
here, at module level, inside a function or under ``TYPE_CHECKING``: a cycle hidden in a function is still
a cycle, and an upward import made lazily still ties a lower room to a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# From the ground up. A module's layer is that of the longest prefix listed; a module that matches none
# fails the test below, so a new room is placed on purpose.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "shared.errors",
        "shared.env_names",
        "shared.layout",
        "shared.naming",
        "shared.hashing",
        "shared.observability",
        "shared.lifecycle",
        "shared.settings",
        "shared.aws",
        "shared.dynamo",
        "shared.storage",
        "shared.workflow",
        "shared.invoke",
        "shared.documents",
        "shared.charts",
    ),
    ("shared.metadata", "shared.registry", "shared.experiments"),
    ("shared.services",),
    ("shared.data",),
    ("shared.ml",),
    ("shared.featurestore",),
    ("shared.serving",),
    ("shared.scoring",),
    ("shared.pipeline",),
    ("shared.monitoring",),
)
ELSEWHERE = ("functions", "infra", "cli", "examples", "bench", "tests")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports, resolved to the longest dotted name."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from shared.x import module`
    return found


def graph(package: str) -> dict[str, set[str]]:
    """module -> the modules of this tree it imports (a name that is not a module of the tree is dropped)."""
    known = {**modules("shared"), **modules("functions")}
    edges: dict[str, set[str]] = {}
    for name, path in modules(package).items():
        edges[name] = {i for i in imports_of(path, name) if i in known and i != name}
    return edges


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[1]
            ):
                best = (index, len(prefix))
    return None if best is None else best[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_shared_or_functions_is_in_an_import_circle() -> None:
    """Given every import in shared/ and functions/ (lazy ones too), then no modules import each other in
    a circle."""
    edges = {**graph("shared"), **graph("functions")}
    assert cycles(edges) == []


def test_every_module_of_shared_stands_on_a_layer() -> None:
    """A new module or package is placed in the layering on purpose (here and in shared/__init__.py)."""
    assert [m for m in modules("shared") if m != "shared" and layer_of(m) is None] == []


def test_no_module_of_shared_imports_from_a_higher_layer() -> None:
    """Given the layers, then every import of shared/ points at its own layer or a lower one."""
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in graph("shared").items()
        for target in sorted(targets)
        if target.startswith("shared.") and (layer_of(target) or 0) > (layer_of(module) or 0)
    ]
    assert upward == []


def test_shared_imports_nothing_of_the_rooms_that_use_it() -> None:
    """shared/ is deployed with every function: it never imports handlers, infra, the CLI or tests."""
    outward = [
        f"{module} imports {target}"
        for module, path in modules("shared").items()
        for target in sorted(imports_of(path, module))
        if target.split(".")[0] in ELSEWHERE
    ]
    assert outward == []


def test_handlers_import_shared_and_libraries_only() -> None:
    """A handler calls into shared/; it never imports another handler, infra or the CLI."""
    strays = [
        f"{module} imports {target}"
        for module, path in modules("functions").items()
        for target in sorted(imports_of(path, module))
        if target.split(".")[0] in ELSEWHERE
    ]
    assert strays == []


def test_the_checker_sees_a_circle_and_an_upward_import() -> None:
    """The rules above can fail: a circle and an upward import made up here are found."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("shared.data.catalog") == 3
    assert layer_of("shared.monitoring.monitor") > layer_of("shared.pipeline.trigger")  # type: ignore[operator]
    assert layer_of("shared.datasets") is None  # a prefix must end at a dot


def readme_layers() -> list[tuple[str, set[str]]]:
    """The README's layer table: per row, its folder and the modules it lists."""
    readme = (ROOT / "README.md").read_text()
    rows = []
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0][:1].isdigit() and "`shared/" in cells[0]:
            folder = cells[0].split("`")[1]
            rows.append((folder, {m.strip().strip("`") for m in cells[1].split(",")}))
    return rows


def test_the_readme_layer_table_lists_every_module_of_shared_on_its_layer() -> None:
    """Given the README's layout table, then its rows are the layers, in order, and each row lists exactly
    the modules in that layer's folder: the table matches the tree."""
    rows = readme_layers()
    assert len(rows) == len(LAYERS)
    for index, (folder, listed) in enumerate(rows):
        package = folder.removesuffix("*.py").rstrip("/").replace("/", ".")
        if folder.endswith("*.py"):
            actual = {p.removeprefix("shared.") for p in LAYERS[index]}
        else:
            assert LAYERS[index] == (package,), folder
            actual = {m.rpartition(".")[2] for m in modules(folder.rstrip("/")) if m != package}
        assert listed == actual, folder
    top_level = {m.removeprefix("shared.") for m in modules("shared") if m.count(".") == 1}
    packages = {
        m.removeprefix("shared.")
        for m in modules("shared")
        if m.count(".") == 1 and (ROOT / m.replace(".", "/")).is_dir()
    }
    flat = {name for folder, listed in rows if folder.endswith("*.py") for name in listed}
    assert top_level - packages == flat
