"""Code dependencies from the static import graph (repro/codedeps.py): what it follows (module-level and in-function
imports, relative imports, `from pkg import submodule`, PEP 562 lazy names) and what it does not (a registry's
importlib fan-out, modules nobody imports)."""

from pathlib import Path

from repro import codedeps


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        f = root / "repro" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return root / "repro"


def test_the_closure_follows_every_static_import_and_no_dynamic_one(tmp_path):
    pkg = write(tmp_path, {
        "__init__.py": "",
        "loop.py": "from repro import train\nfrom repro.strategies import build\n",
        "train.py": "def fit():\n    from .data import Augmenter\n    return Augmenter\n",
        "data/__init__.py": "_WHERE = {'Augmenter': 'augment'}\n",
        "data/augment.py": "import repro.data.specs\n",
        "data/specs.py": "",
        "data/unused.py": "",
        "strategies/__init__.py": ("import importlib\nfrom repro.strategies.base import build\n"
                                   "for m in ('a', 'b'):\n    importlib.import_module(f'repro.strategies.{m}')\n"),
        "strategies/base.py": "def build(): pass\n",
        "strategies/a.py": "from repro.strategies import b\nfrom . import base\n",
        "strategies/b.py": "from .base import build\n",
        "strategies/c.py": "",
    })
    core = set(codedeps.core_files(pkg))
    assert core == {"__init__.py", "loop.py", "train.py", "data/__init__.py", "data/augment.py", "data/specs.py",
                    "strategies/__init__.py", "strategies/base.py"}
    assert set(codedeps.run_files("repro.strategies.a", pkg)) - core == {"strategies/a.py", "strategies/b.py"}
    assert set(codedeps.run_files("repro.strategies.b", pkg)) - core == {"strategies/b.py"}
    assert set(codedeps.run_files("repro.strategies.c", pkg)) - core == {"strategies/c.py"}


def test_every_method_depends_on_its_own_module_and_what_it_imports():
    from repro.methods import run_code
    from repro.strategies import STRATEGIES

    core = set(codedeps.core_files())
    for name, cls in STRATEGIES.items():
        own = f"{cls.__module__.removeprefix('repro.').replace('.', '/')}.py"
        assert own in run_code(name) and core <= set(run_code(name))
    assert "strategies/dfal.py" in run_code("egl") and "strategies/mcdal.py" not in run_code("egl")
    assert {"strategies/vaal.py", "nets/vae.py", "losses/vae.py"} <= set(run_code("sraal"))
    assert "kcenter_mip.py" in run_code("coreset-robust") and "kcenter_mip.py" not in run_code("coreset")
    assert not any(f.startswith(("report/", "cli.py", "bench.py")) for f in run_code("mcdal"))
