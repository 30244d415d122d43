"""The layering of DESIGN.md: engine/, core/ and data/ never import a paper, and no two modules import each other
in a circle (module-level and function-level imports alike: a circle hidden in a function is still a circle)."""

import ast
from pathlib import Path

import archzoo

PACKAGE = Path(archzoo.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The archzoo modules that the file at `path` imports, resolved to absolute names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("archzoo")}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if not target.startswith("archzoo"):
                continue
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}       # `from . import claims` names a module
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules} - {name}


GRAPH = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_engine_core_and_data_import_no_paper():
    climbs = {m: sorted(i for i in deps if i.startswith("archzoo.papers"))
              for m, deps in GRAPH.items() if m.split(".")[1:2] in (["engine"], ["core"], ["data"])}
    assert {m: d for m, d in climbs.items() if d} == {}


def test_no_import_circles_between_modules():
    """A cycle through two or more modules of different packages' internals (a package importing its own
    submodules from `__init__` is not a circle)."""
    def parents(m: str) -> set[str]:
        parts = m.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts))}

    edges = {m: {d for d in deps if d not in parents(m) and m not in parents(d)} for m, deps in GRAPH.items()}
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for d in sorted(edges.get(m, ())):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d] if d in stack else [m, d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert cycles == [], cycles
