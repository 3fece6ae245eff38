"""`python -m repro params`: every method's parameter count by module, computed from instantiated modules in
the configurations the papers report, beside the count the paper prints (MCDAL Table 1; MAL supplementary
Table 2). Where a faithful build differs from the printed count, the difference is shown, not hidden."""

from __future__ import annotations

from pathlib import Path

from repro.al.parameters import MAL_SUPP_TABLE2, MCDAL_TABLE1, ParameterConfig, printed_value, rounded_like  # noqa: F401
from repro.al.strategies import STRATEGIES
from repro.models import count_parameters
from repro.spec.records import atomic_write_json


def configurations() -> list[ParameterConfig]:
    """Every registered method's reported configurations (`Strategy.parameter_configs`)."""
    out = []
    for name in sorted(STRATEGIES):
        out.extend(STRATEGIES[name].parameter_configs())
    return out


def rows(configs: list[ParameterConfig] | None = None) -> list[dict]:
    """One row per module and a total row per configuration of several disjoint modules."""
    table = []
    for cfg in configs if configs is not None else configurations():
        total = 0
        for module_name, module in cfg.modules.items():
            n = count_parameters(module)
            total += n
            table.append(_row(cfg, module_name, n))
        if cfg.total and (len(cfg.modules) > 1 or "total" in cfg.printed):
            table.append(_row(cfg, "total", total))
    return table


def _row(cfg: ParameterConfig, module: str, n: int) -> dict:
    printed = cfg.printed.get(module)
    same = None if printed is None else rounded_like(n, printed) == printed
    return {"method": cfg.method, "setting": cfg.setting, "module": module, "parameters": n,
            "paper": printed or "", "ours (paper's rounding)": rounded_like(n, printed) if printed else "",
            "matches": "" if same is None else ("yes" if same else "no"),
            "difference": "" if printed is None else f"{n - printed_value(printed):+,.0f}",
            "source": cfg.source if module == "total" or printed else ""}


def main(json_out: str | None = None) -> int:
    from tabulate import tabulate

    table = rows()
    if json_out:  # what the audit reads (it imports no torch): reports/parameters.json, a DVC stage


        atomic_write_json(Path(json_out), {"rows": table})
        print(f"wrote {json_out}")
    shown = [{**r, "parameters": f"{r['parameters']:,}"} for r in table]
    print(tabulate(shown, headers="keys", tablefmt="github"))
    mismatched = [r for r in table if r["matches"] == "no"]
    if mismatched:
        print("\nprinted counts our faithful builds do not reproduce (listed, not bent to fit):")
        for r in mismatched:
            print(f"  {r['method']} {r['module']} ({r['setting']}): paper {r['paper']}, ours {r['parameters']:,}")
    return 0
