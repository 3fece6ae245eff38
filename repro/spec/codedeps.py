"""Which source files a run depends on, computed from the package's static import graph.

A run of a method depends on the closure of `import`s (module level and inside functions, absolute and relative)
from the run's entry point (`RUN_ENTRY`, the loop) and the method's strategy module. Registries that import every
member at run time (`repro/al/strategies/__init__.py`'s `importlib` loop, the PEP 562 map in `repro/data/__init__.py`)
are not followed beyond what they import statically, so a strategy module enters a run's closure only when the
run's method, or code it imports, imports it (EGL imports `dfal.bn_affine`, so dfal.py keys EGL's runs; mcdal.py
keys neither). `from pkg import name` adds `pkg/name.py` when it is a module, else `pkg/__init__.py`; a lazy
package name (repro.data's `_WHERE`) resolves through that map. The file list keys the checkpoints
(`code_sha256`) and lists each run stage's DVC deps (`repro/tools/dvc_deps.py`). Torch-free: the AST only.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "repro"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
RUN_ENTRY = ("repro.al.loop",)  # what `python -m repro run` executes for one (experiment, method, seed)


def _module_file(root: Path, module: str) -> Path | None:
    """The file of a dotted module under `root` (the package folder), or None when it is not one."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _lazy_names(tree: ast.Module, package: str) -> dict[str, str]:
    """A package __init__'s PEP 562 map `_WHERE = {name: submodule}` as {name: dotted module}."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_WHERE" for t in node.targets):
            value = ast.literal_eval(node.value)
            return {k: f"{package}.{v}" for k, v in value.items()}
    return {}


def _imports(root: Path, module: str, path: Path) -> set[str]:
    """The package modules `module` (file `path`) imports anywhere in its body."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_pkg else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            base_file = _module_file(root, base)
            lazy = _lazy_names(ast.parse(base_file.read_text()), base) if base_file and \
                base_file.name == "__init__.py" else {}
            for a in node.names:
                sub = f"{base}.{a.name}"
                if _module_file(root, sub) is not None:
                    out.add(sub)
                elif a.name in lazy:
                    out.add(lazy[a.name])
    return {m for m in out if _module_file(root, m) is not None}


@lru_cache(maxsize=8)
def import_graph(root: Path = PACKAGE_DIR) -> dict[str, frozenset[str]]:
    """{module: the package modules it imports} for every .py under `root`."""
    graph = {}
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).with_suffix("")
        parts = [PACKAGE, *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        graph[module] = frozenset(_imports(root, module, f))
    return graph


def closure(roots, root: Path = PACKAGE_DIR) -> set[str]:
    """The modules reachable from `roots` (each included) along static imports; every parent package's __init__ is
    included with its submodule (Python runs it first)."""
    graph = import_graph(root)
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        if m not in graph:
            raise KeyError(f"{m} is not a module of {root}")
        seen.add(m)
        todo.extend(graph[m])
        parent = m.rpartition(".")[0]
        if parent:
            todo.append(parent)
    return seen


def files_of(modules, root: Path = PACKAGE_DIR) -> tuple[str, ...]:
    """Package-relative paths of modules, sorted."""
    return tuple(sorted(str(_module_file(root, m).relative_to(root)) for m in modules))


def run_files(strategy_module: str, root: Path = PACKAGE_DIR) -> tuple[str, ...]:
    """What a run of the method defined in `strategy_module` depends on (package-relative paths)."""
    return files_of(closure((*RUN_ENTRY, strategy_module), root), root)


def core_files(root: Path = PACKAGE_DIR) -> tuple[str, ...]:
    """What every run depends on, whatever its method."""
    return files_of(closure(RUN_ENTRY, root), root)


def folded(files, root: Path = PACKAGE_DIR) -> list[str]:
    """`files` with every sub-folder all of whose .py files are listed written as the folder (dvc.yaml's deps:
    shorter, and the same files; a new file in such a folder makes tests/test_dvc.py ask for a regeneration)."""
    files = set(files)
    folders = sorted({str(Path(f).parent) for f in files} - {"."}, key=lambda d: (d.count("/"), d))
    out = set(files)
    for d in folders:
        inside = {str(p.relative_to(root)) for p in (root / d).rglob("*.py")}
        if inside <= files and not any(d.startswith(f"{o}/") for o in out if not o.endswith(".py")):
            out = {f for f in out if not f.startswith(f"{d}/")} | {d}
    return sorted(out)


def files_sha256(files, root: Path = PACKAGE_DIR) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode())
        h.update((root / rel).read_bytes())
    return h.hexdigest()
