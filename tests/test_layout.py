"""The package layout: imports run one way, functions fit a screen, modules stay small.

Layers, lowest first. A module may import its own package and any lower layer, never
a higher one or a sibling of its own layer (docs/architecture.md draws this).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "kseg"
LAYERS = (
    ("compat",),
    ("errors", "atomic", "quiet"),
    ("validation", "writes"),
    ("parsing", "output"),
    ("registry",),
    ("data", "metrics", "models", "losses"),
    ("runs",),
    ("inference",),
    ("training",),
    ("reporting",),
    ("bench",),
    ("api",),
    ("cli",),
)
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
FACADE = ("__init__", "__main__")  # kseg/__init__.py and kseg/__main__.py may import any layer
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 60, 300


def module_name(path, root):
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def kseg_imports(path, root):
    """(line, imported module) for every `kseg.*` import in `path`, function-level ones too."""
    modules = {module_name(p, root) for p in root.rglob("*.py")}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == root.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == root.name:
            for alias in node.names:  # `from kseg import output` imports kseg.output
                sub = f"{node.module}.{alias.name}"
                version = alias.name == "__version__"
                yield node.lineno, sub if sub in modules or version else node.module


def layer_violations(root):
    """['kseg/x.py:12 imports kseg.y (layer ... above ...)'] for every import against the order."""
    out = []
    for path in sorted(root.rglob("*.py")):
        parts = module_name(path, root).split(".")
        if len(parts) == 1 or parts[1] in FACADE:
            continue  # the facade re-exports; it is not a layer
        source = parts[1]
        for line, target in kseg_imports(path, root):
            tparts = target.split(".")
            if target == f"{root.name}.__version__":
                continue
            if len(tparts) == 1:
                out.append(f"{path.name}:{line} imports the {root.name} facade; import the module instead")
                continue
            dest = tparts[1]
            if dest == source:
                continue
            if dest not in RANK or source not in RANK:
                out.append(f"{path}:{line}: {source} or {dest} has no layer in tests/test_layout.py")
            elif RANK[dest] >= RANK[source]:
                out.append(f"{path.relative_to(root.parent)}:{line} imports {target}: layer "
                           f"{dest} is not below {source}")
    return out


def import_cycles(root):
    """Module-level import cycles between kseg modules, as 'a -> b -> a'."""
    graph = {}
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        name = module_name(path, root)
        mini = ast.Module(body=top, type_ignores=[])
        tmp = {t for _, t in _imports_of(mini, root)}
        graph[name] = {t for t in tmp if t != name and not name.startswith(t + ".")}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def _imports_of(tree, root):
    modules = {module_name(p, root) for p in root.rglob("*.py")}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == root.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == root.name:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield node.lineno, sub if sub in modules else node.module


def test_imports_run_one_way():
    assert layer_violations(ROOT) == []


def test_no_import_cycles():
    assert import_cycles(ROOT) == []


def test_the_checks_catch_a_reversed_import_and_a_cycle(tmp_path):
    """A data module that imports training, and two modules importing each other, are caught."""
    pkg = tmp_path / "kseg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "training").mkdir()
    for init in (pkg / "__init__.py", pkg / "data" / "__init__.py", pkg / "training" / "__init__.py"):
        init.write_text("")
    (pkg / "training" / "config.py").write_text("from kseg.data import io\n")
    (pkg / "data" / "io.py").write_text("def read():\n    from kseg.training.config import X\n")
    assert layer_violations(pkg) == ["kseg/data/io.py:2 imports kseg.training.config: layer training "
                                     "is not below data"]
    (pkg / "data" / "io.py").write_text("from kseg.data import spec\n")
    (pkg / "data" / "spec.py").write_text("from kseg.data.io import read\n")
    assert import_cycles(pkg) == ["kseg.data.io -> kseg.data.spec -> kseg.data.io"]


def _functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_functions_fit_a_screen_and_modules_stay_small(path):
    text = path.read_text()
    assert text.count("\n") <= MAX_MODULE_LINES, f"{path}: {text.count(chr(10))} lines"
    long = [f"{f.name} ({f.end_lineno - f.lineno + 1} lines)" for f in _functions(ast.parse(text))
            if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_no_two_modules_share_a_name():
    """A file's name says which one a reader needs: no module name appears twice in kseg/."""
    seen = {}
    for path in sorted(ROOT.rglob("*.py")):
        if path.name != "__init__.py":
            seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
