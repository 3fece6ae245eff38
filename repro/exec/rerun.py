"""`python -m repro audit --claim ID --rerun`: re-run the runs behind one claim from scratch in a temporary
directory, each with the torch threads and lockstep group its record names, and print a certificate: the
commit, the params hash, the machine class (recorded vs now), and per record whether the new one is identical
(every stage's labeled count, metric value and labeled-set hash) or where it first differs."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from repro.core.determinism import machine_class, machine_class_sha256
from repro.core.device import resolve_device
from repro.spec.params import load_params
from repro.spec.records import git_commit

COMPARED = ("labeled", "value", "labeled_sha256", "selected_sha256")


def first_difference(old: dict, new: dict) -> str | None:
    """Where two records of one run first differ (None: identical in every compared field)."""
    if old.get("initial_pool_sha256") != new.get("initial_pool_sha256"):
        return "initial pool"
    a, b = old.get("stages") or [], new.get("stages") or []
    if len(a) != len(b):
        return f"stage count {len(a)} vs {len(b)}"
    for sa, sb in zip(a, b):
        for key in COMPARED:
            if sa.get(key) != sb.get(key):
                return f"stage {sa.get('stage')} {key}: {sa.get(key)!r} vs {sb.get(key)!r}"
    return None


def _run_settings(rec: dict) -> tuple[int | str, int | str]:
    """(threads, group_runs) the record was made with (its machine class), else params' defaults."""
    cls = (rec.get("provenance") or {}).get("machine_class") or {}
    threads = cls.get("torch_threads") or ((rec.get("provenance") or {}).get("device") or {}).get("torch_threads")
    return (threads or "auto", cls.get("group_runs") or 1)


def rerun_claim(params_path: str, profile: str | None, row: dict[str, Any]) -> int:
    """Re-run every run record behind `row` (an audit row) and print the certificate; 0 when all are identical,
    1 when one differs, 2 when there is nothing to re-run."""

    records = [Path(p) for p in row.get("runs", []) if str(p).endswith(".json") and Path(p).is_file()]
    if not records:
        print(f"nothing to re-run: {row['id']} rests on no run record ({row.get('reason') or 'see its evidence'})")
        return 2
    raw = yaml.safe_load(Path(params_path).read_text())
    differs = 0
    with tempfile.TemporaryDirectory(prefix="repro-rerun-") as tmp:
        tmp = Path(tmp)
        print(f"certificate for {row['id']}: commit {git_commit().get('commit')}, {len(records)} record(s), "
              f"re-run in {tmp}")
        now = machine_class(resolve_device(load_params(params_path, profile).device))
        for path in records:
            old = json.loads(path.read_text())
            threads, group = _run_settings(old)
            mine = {**raw, "results_dir": str(tmp / "results"), "checkpoint_dir": str(tmp / "checkpoints"),
                    "reports_dir": str(tmp / "reports"), "threads": threads, "group_runs": group}
            p = tmp / "params.yaml"
            p.write_text(yaml.safe_dump(mine, sort_keys=False))
            cmd = [sys.executable, "-m", "repro", "--params", str(p), *(["--profile", profile] if profile else []),
                   "run", old["experiment"], old["method"], "--seeds", str(old["seed"]), "--jobs", "1", "--quiet"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            new_path = tmp / "results" / old["experiment"] / old["method"] / f"seed{old['seed']}.json"
            if done.returncode != 0 or not new_path.is_file():
                print(f"  {path}: the re-run failed ({done.stderr.strip().splitlines()[-1:] or done.returncode})")
                differs += 1
                continue
            new = json.loads(new_path.read_text())
            prov_old, prov_new = old.get("provenance") or {}, new.get("provenance") or {}
            where = first_difference(old, new)
            same_params = prov_old.get("params_raw_sha256") == prov_new.get("params_raw_sha256")
            cls_old = prov_old.get("machine_class_sha256") or "unrecorded"
            cls_new = prov_new.get("machine_class_sha256") or machine_class_sha256(now)
            status = "identical" if where is None else f"differs ({where})"
            differs += where is not None
            print(f"  {path}: {status}; params {str(prov_old.get('params_raw_sha256'))[:12]}"
                  f"{'' if same_params else ' -> ' + str(prov_new.get('params_raw_sha256'))[:12]}; machine class "
                  f"{cls_old} -> {cls_new}{' (same class)' if cls_old == cls_new else ' (another class: equal bits are not promised)'}; "
                  f"threads {threads}, group {group}; made at commit {str((prov_old.get('git') or {}).get('commit'))[:12]}")
    print(f"{len(records) - differs} of {len(records)} record(s) identical")
    return 1 if differs else 0
