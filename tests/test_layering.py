"""The layers, checked by walking the source with ``ast``: which way imports run, and where
knowledge of one kind of model may live.

- ``hub`` imports nothing from ``finetune`` or ``webui``; ``finetune`` nothing from ``webui``.
- ``hub`` has no import cycle (imports inside functions count; those under ``TYPE_CHECKING`` don't).
- Only the transformers family and the Hugging Face import name the ``transformers`` package,
  and no module branches on an architecture's name (``architecture == "mlp"``).
- Environment variables are read in one settings module per package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.one_backend  # the source alone: no registry involved

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hub", "finetune", "webui")
# Where Hugging Face's transformers may be named: its family, and the import of Hugging Face folders.
TRANSFORMERS_HOMES = {"hub.families.transformers", "hub.huggingface"}
# Where each package reads its environment.
SETTINGS = {"hub.settings", "finetune.settings", "webui.settings"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for child in node.body for inner in ast.walk(child)}
    return skipped


def _imports(module: str) -> set[str]:
    """The project modules ``module`` imports (``from hub import x`` is ``hub.x`` when that is a module)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {t for t in targets if t.split(".")[0] in PACKAGES}


GRAPH = {module: _imports(module) for module in MODULES}


@pytest.mark.parametrize(("lower", "upper"), [("hub", "finetune"), ("hub", "webui"), ("finetune", "webui")])
def test_a_lower_layer_imports_nothing_from_a_higher_one(lower: str, upper: str) -> None:
    wrong = sorted(f"{module} imports {target}" for module, targets in GRAPH.items() if module.split(".")[0] == lower
                   for target in targets if target.split(".")[0] == upper)
    assert not wrong, wrong


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_hub_has_no_import_cycle() -> None:
    hub_graph = {m: {t for t in targets if t.split(".")[0] == "hub" and t != m} for m, targets in GRAPH.items()
                 if m.split(".")[0] == "hub"}
    assert _cycles(hub_graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _names_transformers(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "transformers" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "transformers" and not node.level:
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith(("import_module", "find_spec")) and any(
                isinstance(a, ast.Constant) and a.value == "transformers" for a in node.args):
            lines.append(node.lineno)
    return lines


def _architecture_branches(tree: ast.AST) -> list[int]:
    """Comparisons of an architecture (``x.architecture``, ``architecture``, ``arch``) with a string."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            names_architecture = any(ast.unparse(side).split(".")[-1] in ("architecture", "arch", "architecture_name")
                                     for side in sides)
            literal = any(isinstance(side, ast.Constant) and isinstance(side.value, str) for side in sides) or any(
                isinstance(side, ast.Tuple | ast.List | ast.Set | ast.Dict) for side in sides)
            if names_architecture and literal:
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("module", sorted(set(MODULES) - TRANSFORMERS_HOMES))
def test_only_the_transformers_family_names_transformers(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text())
    assert _names_transformers(tree) == [], f"{module} imports transformers (lines above); ask its family instead"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_branches_on_an_architecture_name(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text())
    assert _architecture_branches(tree) == [], f"{module} compares an architecture with a name; ask its family instead"


def _reads_environment(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        text = ast.unparse(node) if isinstance(node, ast.Attribute | ast.Call) else ""
        if isinstance(node, ast.Attribute) and text in ("os.environ.get", "os.getenv"):
            lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("module", sorted(set(MODULES) - SETTINGS))
def test_environment_is_read_only_in_settings(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text())
    assert _reads_environment(tree) == [], f"{module} reads os.environ; read it in its package's settings module"
