"""Check medsr's one-way package layout (issue #18) by parsing imports with ``ast``.

Usage::

    python scripts/check_architecture.py            # exit 1 and one line per violation
    python scripts/check_architecture.py --list     # every module, its layer and its medsr imports

Each violation is one line ``file:line: rule: detail``. Rules:

``upward``        a module imports a module of a higher layer (every import counts: module level, inside a
                  function, under ``if TYPE_CHECKING``, ``import_module("medsr...")`` with a literal name).
``sibling``       training, inference and evaluation import each other.
``cycle``         an elementary cycle of imports between files. Every import counts, function-level ones too:
                  a function-level import is how a cycle gets hidden (io/readers.py defers ``slice_facts``
                  with the comment "lazy: slice_facts -> naming -> readers"), and all three cycles issue #18
                  measured close through one. Counting module-level imports only would find none of them.
                  The public face is left out: ``medsr/__init__.py`` runs before every submodule and imports
                  only on attribute access, so edges into or out of it cannot cycle.
``long-function`` a ``def`` (function or method, nested ones included) longer than ``--max-function-lines``
                  counted from the ``def`` line to its last line (decorators excluded); a nested function
                  counts in its enclosing function's length as well, since a reader reads it there.
``long-module``   a file longer than ``--max-module-lines`` (the house rule: no module over 400 lines).
``unmapped``      a module no entry of ``LAYERS`` covers: give new packages a layer here.
``unresolved``    an import of a ``medsr`` module that does not exist.
``syntax``        a file that does not parse (left out of every other rule).
``lazy-target``   an entry of ``_LAZY`` in ``medsr/__init__.py`` names a module or attribute that does not exist.

Imports resolve to the file that runs: ``from medsr.io import readers`` is an edge to ``medsr.io.readers``,
``from medsr.transforms import parse_noise`` to ``medsr/transforms/__init__.py``; ``from medsr import
load_volume`` follows the lazy table to ``medsr.io.readers``. The parent packages that Python initialises on
the way are not edges (they are initialising already when a child runs).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "medsr"

# Package prefix -> layer, bottom (0) to top; the longest matching prefix wins.
LAYERS: dict[str, int] = {
    "medsr.geometry": 0,
    "medsr.errors": 0,
    "medsr.profiles": 0,
    "medsr.models": 0,
    "medsr.io": 1,
    "medsr.transforms": 2,
    "medsr.runtime": 3,
    "medsr.training": 4,
    "medsr.inference": 4,
    "medsr.evaluation": 4,
    "medsr.jobs": 5,
    "medsr.cli": 6,
}
# Same layer, but never importing each other.
SIBLINGS: frozenset[str] = frozenset({"medsr.training", "medsr.inference", "medsr.evaluation"})
# The public face: may import anything (lazily); ``medsr.__main__`` sits above cli.
FACE: dict[str, int] = {"medsr": 7, "medsr.__main__": 7}
LAZY_TABLE = "_LAZY"


@dataclass(frozen=True)
class Edge:
    """One import of a medsr module: ``src`` imports ``dst`` at ``line``; ``kind`` says how."""

    src: str
    dst: str
    line: int
    kind: str  # "module", "function", "type-checking", "dynamic" or "lazy"


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.detail}"


@dataclass
class Module:
    name: str
    path: Path
    rel: str
    is_package: bool
    tree: ast.Module
    n_lines: int
    defined: set[str] = field(default_factory=set)


def discover(root: Path, package: str = PACKAGE) -> tuple[dict[str, Module], list[Violation]]:
    """Parse every ``package/**/*.py`` under ``root`` into ``Module``s keyed by dotted name.

    A file that does not parse is left out and reported as a ``syntax`` violation.
    """
    modules: dict[str, Module] = {}
    broken: list[Violation] = []
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        source = path.read_text(encoding="utf-8")
        name = ".".join(parts)
        rel = path.relative_to(root).as_posix()
        try:
            tree = ast.parse(source, filename=str(path))
        except SyntaxError as err:
            broken.append(Violation(rel, err.lineno or 1, "syntax", f"does not parse: {err.msg}"))
            continue
        modules[name] = Module(name, path, rel, is_package, tree, len(source.splitlines()))
        modules[name].defined = _top_level_names(tree)
    return modules, broken


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names bound at module level (defs, classes, assignments, imports), looking into if/try blocks."""
    names: set[str] = set()
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, block, []):
                    pending.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportVisitor(ast.NodeVisitor):
    """Collects (statement, kind) for every import, telling module level from function level."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.AST, str]] = []
        self._depth = 0
        self._type_checking = 0

    def _kind(self) -> str:
        if self._depth:
            return "function"
        return "type-checking" if self._type_checking else "module"

    def _visit_def(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_def

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._type_checking += 1
            for child in node.body:
                self.visit(child)
            self._type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self._kind()))

    visit_ImportFrom = visit_Import

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        literal = node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
        if name == "import_module" and literal:
            self.found.append((node, "dynamic"))
        self.generic_visit(node)


def _resolve_from(module: Module, node: ast.ImportFrom, modules: dict[str, Module]) -> list[str | None]:
    """Targets of ``from X import a, b``: a submodule where the name is one, else X itself."""
    if node.level:
        parts = module.name.split(".")
        if not module.is_package:
            parts = parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
        base = ".".join(parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if base.split(".")[0] != PACKAGE:
        return []
    targets: list[str | None] = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in modules:
            targets.append(sub)
        elif base == PACKAGE and alias.name in lazy_table(modules):
            targets.append(lazy_table(modules)[alias.name][0])
        elif base in modules:
            targets.append(base)
        else:
            targets.append(None)
            break
    return targets


def lazy_table(modules: dict[str, Module]) -> dict[str, tuple[str, int]]:
    """``_LAZY`` in ``medsr/__init__.py``: attribute name -> (module name, line)."""
    face = modules.get(PACKAGE)
    table: dict[str, tuple[str, int]] = {}
    if face is None:
        return table
    for node in face.tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        target = node.target if isinstance(node, ast.AnnAssign) else target
        if isinstance(target, ast.Name) and target.id == LAZY_TABLE and isinstance(node.value, ast.Dict):
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(value, ast.Constant):
                    table[str(key.value)] = (str(value.value), value.lineno)
    return table


def collect_edges(modules: dict[str, Module]) -> tuple[list[Edge], list[Violation]]:
    """Every medsr -> medsr import edge, and ``unresolved`` violations for imports of missing modules."""
    edges: list[Edge] = []
    problems: list[Violation] = []
    for module in modules.values():
        visitor = _ImportVisitor()
        visitor.visit(module.tree)
        for node, kind in visitor.found:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
                targets: list[str | None] = [n if n in modules else None for n in names]
            elif isinstance(node, ast.ImportFrom):
                targets = _resolve_from(module, node, modules)
            else:
                name = node.args[0].value  # type: ignore[attr-defined]
                targets = [name if name in modules else None] if name.split(".")[0] == PACKAGE else []
            for dst in dict.fromkeys(targets):
                if dst is None:
                    detail = f"{ast.unparse(node)!r} names no module under {PACKAGE}/"
                    problems.append(Violation(module.rel, node.lineno, "unresolved", detail))
                elif dst != module.name:
                    edges.append(Edge(module.name, dst, node.lineno, kind))
    face = modules.get(PACKAGE)
    for attr, (dst, line) in lazy_table(modules).items():
        if dst not in modules:
            problems.append(Violation(face.rel, line, "lazy-target", f"{attr!r} -> {dst!r}: no such module"))
        elif attr not in modules[dst].defined:
            problems.append(Violation(face.rel, line, "lazy-target", f"{attr!r} is not defined in {dst}"))
        else:
            edges.append(Edge(PACKAGE, dst, line, "lazy"))
    return edges, problems


def layer_of(name: str) -> tuple[str, int] | None:
    """(matching prefix, layer) for a module name; None where no ``LAYERS`` or ``FACE`` entry covers it."""
    if name in FACE:
        return name, FACE[name]
    matches = [p for p in LAYERS if name == p or name.startswith(p + ".")]
    if not matches:
        return None
    prefix = max(matches, key=len)
    return prefix, LAYERS[prefix]


def check_layers(modules: dict[str, Module], edges: Iterable[Edge]) -> list[Violation]:
    """``unmapped``, ``upward`` and ``sibling`` violations."""
    out = [
        Violation(m.rel, 1, "unmapped", f"{m.name} has no layer: add its package to LAYERS")
        for m in modules.values()
        if layer_of(m.name) is None
    ]
    for edge in edges:
        src, dst = layer_of(edge.src), layer_of(edge.dst)
        if edge.src in FACE or edge.dst == PACKAGE or src is None or dst is None:
            continue
        where = "" if edge.kind == "module" else f" ({edge.kind} import)"
        rel = modules[edge.src].rel
        if dst[1] > src[1]:
            detail = f"{edge.src} (layer {src[1]}) imports {edge.dst} (layer {dst[1]}){where}"
            out.append(Violation(rel, edge.line, "upward", detail))
        elif src[0] != dst[0] and src[0] in SIBLINGS and dst[0] in SIBLINGS:
            detail = f"{edge.src} imports {edge.dst}: {src[0]} and {dst[0]} are siblings{where}"
            out.append(Violation(rel, edge.line, "sibling", detail))
    return out


def find_cycles(edges: Iterable[Edge], limit: int = 200) -> list[list[Edge]]:
    """Elementary cycles (Johnson-style: each starts at its smallest module), at most ``limit``."""
    best: dict[tuple[str, str], Edge] = {}
    for e in edges:
        if e.src in FACE or e.dst in FACE:
            continue
        old = best.get((e.src, e.dst))
        rank = (e.kind != "module", e.line)
        if old is None or rank < (old.kind != "module", old.line):
            best[(e.src, e.dst)] = e
    graph: dict[str, list[Edge]] = {}
    for (src, _), e in sorted(best.items()):
        graph.setdefault(src, []).append(e)
    component = _components(graph)
    cycles: list[list[Edge]] = []
    for start in sorted(graph):
        stack: list[tuple[str, list[Edge]]] = [(start, [])]
        while stack and len(cycles) < limit:
            node, path = stack.pop()
            on_path = {e.src for e in path} | {node}
            for e in reversed(graph.get(node, [])):
                if e.dst == start:
                    cycles.append([*path, e])
                elif e.dst > start and e.dst not in on_path and component.get(e.dst) == component[start]:
                    stack.append((e.dst, [*path, e]))
    return sorted(cycles, key=lambda c: [e.src for e in c])


def _components(graph: dict[str, list[Edge]]) -> dict[str, int]:
    """Strongly connected component number of every node (Tarjan), so cycle search stays inside one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    component: dict[str, int] = {}

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for e in graph.get(node, []):
            if e.dst not in index:
                visit(e.dst)
                low[node] = min(low[node], low[e.dst])
            elif e.dst in stack:
                low[node] = min(low[node], index[e.dst])
        if low[node] == index[node]:
            number = len(set(component.values()))
            while True:
                member = stack.pop()
                component[member] = number
                if member == node:
                    break

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return component


def check_cycles(modules: dict[str, Module], edges: Iterable[Edge]) -> list[Violation]:
    out = []
    for cycle in find_cycles(edges):
        steps = [f"{e.src}:{e.line}{'' if e.kind == 'module' else f'({e.kind})'}" for e in cycle]
        detail = " -> ".join([*steps, cycle[0].src])
        out.append(Violation(modules[cycle[0].src].rel, cycle[0].line, "cycle", detail))
    return out


def check_lengths(modules: dict[str, Module], max_function: int, max_module: int) -> list[Violation]:
    out = []
    for m in modules.values():
        if m.n_lines > max_module:
            out.append(Violation(m.rel, 1, "long-module", f"{m.n_lines} lines (max {max_module})"))
        for node in ast.walk(m.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > max_function:
                    detail = f"{node.name} is {length} lines (max {max_function})"
                    out.append(Violation(m.rel, node.lineno, "long-function", detail))
    return out


def check(root: Path, max_function: int = 100, max_module: int = 400) -> list[Violation]:
    """All violations for the package under ``root``, sorted by file and line."""
    modules, out = discover(root)
    edges, problems = collect_edges(modules)
    out += problems
    out += check_layers(modules, edges)
    out += check_cycles(modules, edges)
    out += check_lengths(modules, max_function, max_module)
    return sorted(set(out), key=lambda v: (v.path, v.line, v.rule, v.detail))


def listing(root: Path) -> list[str]:
    """One line per module (``file [layer prefix]``) and one indented line per medsr import."""
    modules, _ = discover(root)
    edges, _ = collect_edges(modules)
    lines = []
    for name in sorted(modules):
        layer = layer_of(name)
        label = "unmapped" if layer is None else f"{layer[1]} {layer[0]}"
        lines.append(f"{modules[name].rel} [{label}]")
        for e in sorted((e for e in edges if e.src == name), key=lambda e: e.line):
            dst = layer_of(e.dst)
            lines.append(f"    :{e.line} -> {e.dst} [{'?' if dst is None else dst[1]}] {e.kind}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = Path(__file__).resolve().parent.parent
    parser.add_argument("--root", type=Path, default=default_root, help="directory holding medsr/")
    parser.add_argument("--list", action="store_true", help="print modules, layers and imports; exit 0")
    parser.add_argument("--max-function-lines", type=int, default=100)
    parser.add_argument("--max-module-lines", type=int, default=400)
    args = parser.parse_args(argv)
    if not (args.root / PACKAGE).is_dir():
        print(f"check_architecture: error: no {PACKAGE}/ under {args.root}", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(listing(args.root)))
        return 0
    violations = check(args.root, args.max_function_lines, args.max_module_lines)
    for v in violations:
        print(v)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
