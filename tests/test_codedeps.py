"""Code dependencies from the static import graph (repro/spec/codedeps.py): what it follows (module-level and in-function
imports, relative imports, `from pkg import submodule`, PEP 562 lazy names) and what it does not (a registry's
importlib fan-out, modules nobody imports)."""

from pathlib import Path

from repro.spec import codedeps


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        f = root / "repro" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return root / "repro"


def test_the_closure_follows_every_static_import_and_no_dynamic_one(tmp_path):
    pkg = write(tmp_path, {
        "__init__.py": "",
        "al/__init__.py": "",
        "al/loop.py": "from repro.core import train\nfrom repro.al.strategies import build\n",
        "core/__init__.py": "",
        "core/train.py": "def fit():\n    from ..data import Augmenter\n    return Augmenter\n",
        "data/__init__.py": "_WHERE = {'Augmenter': 'augment'}\n",
        "data/augment.py": "import repro.data.specs\n",
        "data/specs.py": "",
        "data/unused.py": "",
        "al/strategies/__init__.py": ("import importlib\nfrom repro.al.strategies.base import build\n"
                                      "for m in ('a', 'b'):\n    importlib.import_module(f'repro.al.strategies.{m}')\n"),
        "al/strategies/base.py": "def build(): pass\n",
        "al/strategies/a.py": "from repro.al.strategies import b\nfrom . import base\n",
        "al/strategies/b.py": "from .base import build\n",
        "al/strategies/c.py": "",
    })
    core = set(codedeps.core_files(pkg))
    assert core == {"__init__.py", "al/__init__.py", "al/loop.py", "core/__init__.py", "core/train.py",
                    "data/__init__.py", "data/augment.py", "data/specs.py", "al/strategies/__init__.py",
                    "al/strategies/base.py"}
    s = "al/strategies/"
    assert set(codedeps.run_files("repro.al.strategies.a", pkg)) - core == {f"{s}a.py", f"{s}b.py"}
    assert set(codedeps.run_files("repro.al.strategies.b", pkg)) - core == {f"{s}b.py"}
    assert set(codedeps.run_files("repro.al.strategies.c", pkg)) - core == {f"{s}c.py"}


def test_every_method_depends_on_its_own_module_and_what_it_imports():
    from repro.al.methods import run_code
    from repro.al.strategies import STRATEGIES

    core = set(codedeps.core_files())
    for name, cls in STRATEGIES.items():
        own = f"{cls.__module__.removeprefix('repro.').replace('.', '/')}.py"
        assert own in run_code(name) and core <= set(run_code(name))
    assert "al/strategies/dfal.py" in run_code("egl") and "al/strategies/mcdal.py" not in run_code("egl")
    assert {"al/strategies/vaal.py", "models/nets/vae.py", "al/losses/vae.py"} <= set(run_code("sraal"))
    assert "al/kcenter_mip.py" in run_code("coreset-robust") and "al/kcenter_mip.py" not in run_code("coreset")
    assert not any(f.startswith(("report/", "cli.py", "tools/")) for f in run_code("mcdal"))
