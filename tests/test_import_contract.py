"""The import contract: one-way layers, no cycles, no private names across modules, and imports inside functions
only where the allow-list below says why.

Layers (lower first): spec <- core <- data, models <- al <- exec <- tools <- cli. A module imports its own package
and lower layers only; data and models do not import each other; report imports spec only (figure and audit
stages stay torch-free), and only tools and the CLI import report.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "repro"
RANK = {"spec": 0, "core": 1, "data": 2, "models": 2, "al": 3, "exec": 4, "tools": 5, "cli": 6, "__main__": 7}
REPORT_IMPORTS = {"spec", "report"}
REPORT_READERS = {"report", "tools", "cli", "__main__"}

# Imports inside functions, by (importing module prefix, imported module prefix): each with its reason.
IN_FUNCTION = {
    ("repro.cli", ""): "CLI start-up: each subcommand loads only what it runs (`--help`, `check`, the torch-free "
                       "report stages start in well under a second)",
    ("repro.__main__", "repro.cli"): "python -m repro: the CLI is loaded when run",
    ("repro.exec.workers", "repro."): "worker initialisation order: threads are set before torch loads in each worker",
    ("repro.exec.executors", "repro."): "Slurm / local job arrays: a job loads the run code after its own settings",
    ("", "submitit"): "optional dependency of `run --executor`",
    ("", "matplotlib"): "plotting loads only where a figure is drawn",
    ("", "tabulate"): "Markdown tables load only where a table is written",
    ("", "torchvision"): "torchvision (about 2 s per process) loads only where one of its models, dataset classes "
                         "or transforms is used",
    ("repro.models", "repro.models.ssd"): "SSD pulls in torchvision's detection models: built only where asked for",
    ("", "PIL"): "image decoding loads only where real files are read",
    ("", "sklearn"): "scikit-learn loads only for its bundled digits and the embedding figure",
    ("", "scipy"): "the k-center MIP solver loads only where coreset-robust runs",
    ("", "torchmetrics"): "metric back-ends load on the first evaluation",
    ("", "importlib.metadata"): "package versions are read only for a record's provenance",
    ("", "pycocotools"): "optional mAP back-end",
    ("", "faster_coco_eval"): "optional mAP back-end",
}


@dataclass(frozen=True)
class Import:
    importer: str
    module: str  # the imported module (a submodule where `from pkg import sub` names one)
    names: tuple[str, ...]
    in_function: bool
    line: int


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    base = PACKAGE_DIR.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path) -> list[Import]:
    me = module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    out: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend(Import(me, a.name, (), in_function, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = me.split(".")[: len(me.split(".")) - child.level + (path.name == "__init__.py")]
                    base = ".".join(anchor + ([child.module] if child.module else []))
                subs = [a.name for a in child.names if is_module(f"{base}.{a.name}")]
                plain = tuple(a.name for a in child.names if a.name not in subs)
                if plain or not subs:
                    out.append(Import(me, base, plain, in_function, child.lineno))
                out.extend(Import(me, f"{base}.{s}", (), in_function, child.lineno) for s in subs)
            visit(child, inner)

    visit(tree, False)
    return out


def all_imports() -> list[Import]:
    return [i for f in sorted(PACKAGE_DIR.rglob("*.py")) for i in imports_of(f)]


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "repro"


def upward(a: str, b: str) -> str | None:
    """Why `a` may not import `b` (None when it may)."""
    la, lb = layer(a), layer(b)
    if lb == "repro" or la == lb:
        return None
    if la == "report":
        return None if lb in REPORT_IMPORTS else "report imports spec only"
    if lb == "report":
        return None if la in REPORT_READERS else "only tools and the CLI read report"
    if la not in RANK or lb not in RANK:
        return f"unknown layer {la if la not in RANK else lb}"
    if RANK[lb] >= RANK[la]:
        return f"{la} (layer {RANK[la]}) may not import {lb} (layer {RANK[lb]})"
    return None


def allowed_in_function(imp: Import) -> bool:
    return any(imp.importer.startswith(a) and (imp.module == b or imp.module.startswith(b))
               for a, b in IN_FUNCTION)


def test_no_upward_import():
    bad = [f"{i.importer}:{i.line} imports {i.module}: {why}" for i in all_imports()
           if i.module.startswith("repro") and (why := upward(i.importer, i.module))]
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    graph: dict[str, set[str]] = {}
    for i in all_imports():
        if i.module.startswith("repro.") and i.module != i.importer:
            graph.setdefault(i.importer, set()).add(i.module)
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    assert not cycles, "\n".join(" <-> ".join(sorted(c)) for c in cycles)


def test_no_private_name_from_another_module():
    bad = [f"{i.importer}:{i.line} imports {n} from {i.module}" for i in all_imports()
           if i.module.startswith("repro") and i.module != i.importer for n in i.names if n.startswith("_")]
    assert not bad, "\n".join(bad)


def test_imports_inside_functions_only_from_the_allow_list():
    bad = [f"{i.importer}:{i.line} imports {i.module} inside a function" for i in all_imports()
           if i.in_function and not allowed_in_function(i)]
    assert not bad, f"{len(bad)} unlisted in-function imports:\n" + "\n".join(bad)


def test_the_contract_sees_what_it_forbids(tmp_path):
    """The walker finds in-function, relative and submodule imports (a contract that sees nothing passes)."""
    imps = imports_of(PACKAGE_DIR / "cli.py")
    assert any(i.in_function for i in imps) and any(not i.in_function for i in imps)
    assert upward("repro.core.train", "repro.data.augment") and upward("repro.report.audit", "repro.core.tasks")
    assert upward("repro.data.datasets", "repro.models.base") and not upward("repro.al.loop", "repro.core.train")
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) and \
        sorted(map(sorted, strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}))) == [["a", "b"], ["c"]]


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components of a directed graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            comps.append(comp)

    for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if v not in index:
            visit(v)
    return comps
