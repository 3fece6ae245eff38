"""MCDAL Table 1 as an artifact: each method's sampling time at stage 1 on this device and its parameter count,
beside the paper's (from paper_tables/mcdal.yaml), and the time ratios to MCDAL beside the paper's ratios.

The `paper` profile times Table 1's full stage-1 pool (5,000 + 45,000, ResNet-18, budget 2,500); `smoke` the
reduced CPU pool (`repro.tools.sampling`). The paper timed a GPU: absolute seconds are not comparable across
hardware, and ratios only on a GPU (the audit says so)."""

from __future__ import annotations

from pathlib import Path

from repro.al.strategies import STRATEGIES
from repro.core.device import resolve_device
from repro.report.claims import load_registries
from repro.spec.artifacts import SamplingTable
from repro.spec.params import Params
from repro.spec.records import atomic_write_json, atomic_write_text, git_commit
from repro.tools import sampling
from repro.tools.params_table import rows as parameter_rows


def paper_numbers(registry: dict, art: SamplingTable) -> tuple[dict, dict, dict]:
    """({method: stated seconds}, {method: stated parameters}, {method: stated time ratio to the reference})."""
    times, counts, ratios = {}, {}, {}
    for c in registry["claims"]:
        s = c["setting"]
        methods = s.get("methods") or []
        if c["kind"] == "value" and len(methods) == 1 and methods[0] in art.methods:
            if s.get("metric") == "sampling_time":
                times[methods[0]] = c["value"]
            elif s.get("metric") == "parameters" and "table1" in c["id"]:
                counts[methods[0]] = c["value"]
        elif c["kind"] == "ratio" and s.get("metric") == "sampling_time" and methods[-1:] == [art.reference]:
            ratios[methods[0]] = c["value"]
    return times, counts, ratios


def build_sampling_table(params: Params, art: SamplingTable, tables: str | Path = "paper_tables",
                         progress: bool = True) -> tuple[Path, Path]:
    from tabulate import tabulate

    registry = load_registries(tables).get(art.paper)
    if registry is None:
        raise FileNotFoundError(f"{tables}/{art.paper}.yaml: no claims registry for {art.paper}")
    p_times, p_counts, p_ratios = paper_numbers(registry, art)
    device = resolve_device(params.device)
    workload = sampling.sampling_workload(device, params.profile == "paper")

    configs = [c for m in art.methods for c in STRATEGIES[m].parameter_configs()]
    counts = {(r["method"], r["setting"], r["module"]): r["parameters"] for r in parameter_rows(configs)}
    rows = []
    for m in art.methods:
        seconds, _ = sampling.time_query(m, workload)
        if progress:
            print(f"  {m:<10} {seconds:8.3f} s", flush=True)
        n = counts.get((m, art.parameter_setting, "total"), counts.get((m, art.parameter_setting, "task model")))
        rows.append({"method": m, "paper_seconds": p_times.get(m), "seconds": seconds,
                     "paper_parameters": p_counts.get(m), "parameters": n})
    ref = next(r["seconds"] for r in rows if r["method"] == art.reference)
    ratios = [{"of": r["method"], "over": art.reference, "paper": p_ratios.get(r["method"]),
               "ours": r["seconds"] / ref if ref > 0 else None} for r in rows if r["method"] != art.reference]
    result = {"artifact": art.key, "title": art.title, "profile": params.profile, "device": device.type,
              "workload": workload.describe(), "rows": rows, "ratios": ratios, "git": git_commit()}
    out = Path(params.reports_dir) / art.paper
    js, md = out / f"{art.name}.json", out / f"{art.name}.md"
    atomic_write_json(js, result)

    def fmt(v, spec):
        return "" if v is None else format(v, spec)

    table = [{"method": r["method"], "paper time (s)": fmt(r["paper_seconds"], ".2f"),
              "measured time (s)": fmt(r["seconds"], ".3f"), "paper params": fmt(r["paper_parameters"], ",.0f"),
              "measured params": fmt(r["parameters"], ","),
              "Δ params": fmt(None if r["paper_parameters"] is None or r["parameters"] is None
                              else r["parameters"] - r["paper_parameters"], "+,.0f")} for r in rows]
    ratio_rows = [{"time ratio": f"{q['of']} / {q['over']}", "paper": fmt(q["paper"], ".1f"),
                   "measured": fmt(q["ours"], ".1f"),
                   "Δ": fmt(None if q["paper"] is None or q["ours"] is None else q["ours"] - q["paper"], "+.1f")}
                  for q in ratios]
    w = workload.describe()
    text = "\n".join([
        f"# {art.title}", "",
        f"Profile **{params.profile}**, device **{device.type}**: one query of {w['budget']:,} from {w['labeled']:,} "
        f"labeled + {w['unlabeled']:,} unlabeled CIFAR-10-shaped images, ResNet-18 at width {w['width']:g}. The paper "
        "timed a GPU at Table 1's full stage 1: absolute seconds are not comparable across hardware; the parameter "
        "counts are the full-size modules (`python -m repro params`, printed counts rounded by the paper).", "",
        tabulate(table, headers="keys", tablefmt="github"), "",
        tabulate(ratio_rows, headers="keys", tablefmt="github"), ""])
    atomic_write_text(md, text)
    return js, md
