"""The package's floors (docs/design.md, "The layers of the house"): every import inside pynn,
lazy ones in functions included, goes to the importer's own package or to a floor below it,
and no two files import each other round a circle. Read from the source's own import
statements, so a new arrow that runs back up fails here before anyone has to find it."""
import ast
import pathlib

import pytest

import pynn

ROOT = pathlib.Path(pynn.__file__).parent

# Floor of each room, from the ground up. A room is a subpackage or a top-level module; a
# file may import its own room and any lower floor.
FLOORS = {
    "_checks": 0, "datasets": 0, "_kernels": 0, "_atomic": 0, "_version": 0,
    "_threads": 1, "_random": 1, "tune": 1,
    "backend": 2,
    "nn": 3,
    "optim": 4,
    "io": 5, "data": 5, "distributed": 5,
    "train": 6, "theory": 6,
    # the package's face (``import pynn``), and the callbacks' old import path
    "__init__": 7, "callbacks": 7,
    "search": 8, "sklearn": 8, "onnx": 8,
    "bench": 9,
    "cli": 10,
    "__main__": 11,
}


def _module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path):
    """The pynn modules ``path`` imports (absolute dotted names), wherever the import stands."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "pynn")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "pynn":
                continue
            for alias in node.names:
                # ``from pkg import submodule`` imports the submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if _is_module(sub) else target)
    return found


def _is_module(dotted):
    rel = pathlib.Path(*dotted.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists()


def _room(dotted):
    parts = dotted.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


SOURCES = sorted(p for p in ROOT.rglob("*.py") if "_kernels" not in p.parts)


def test_every_room_has_a_floor():
    rooms = {_room(_module_name(p)) for p in SOURCES}
    assert rooms <= set(FLOORS), f"rooms without a floor: {sorted(rooms - set(FLOORS))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_run_only_down_or_within_the_room(path):
    here = _room(_module_name(path))
    up = [t for t in _imports(path)
          if _room(t) != here and FLOORS[_room(t)] >= FLOORS[here]]
    assert not up, f"{path.relative_to(ROOT.parent)} (floor {FLOORS[here]}) imports " + ", ".join(
        f"{t} (floor {FLOORS[_room(t)]})" for t in sorted(up))


def test_no_import_circles_between_files():
    graph = {_module_name(p): {t for t in _imports(p) if t != _module_name(p)} for p in SOURCES}
    # a package's __init__ re-exports its files: an arrow into a package means its files, and
    # a file importing its own package's face is what the floors test above is for
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph or _is_face(nxt):
                continue
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state and not _is_face(node):
            visit(node)


def _is_face(dotted):
    return (ROOT / pathlib.Path(*dotted.split(".")[1:]) / "__init__.py").exists()
