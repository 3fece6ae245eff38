"""`python -m repro params`: every method's parameter count by module, computed from instantiated modules in
the configurations the papers report, beside the count the paper prints (MCDAL Table 1; MAL supplementary
Table 2). Where a faithful build differs from the printed count, the difference is shown, not hidden."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from repro.models import count_parameters

# Counts as the papers print them (for the comparison column only; ours are always computed).
# MCDAL Table 1: CIFAR-10, ResNet-18, total parameters per method.
MCDAL_TABLE1 = {"coreset": "11.17M", "ll": "11.29M", "vaal": "34.29M", "sraal": "45.58M", "mcdal": "11.19M"}
# MAL supplementary Table 2 (CIFAR-100): per module, encoder F, classifier C, discriminator D, task model T.
MAL_SUPP_TABLE2 = {"resnet18": {"F": "11.18M", "C": "156.93K", "D": "525.83K", "T": "11.23M"},
                   "vgg16": {"F": "14.72M", "C": "12.90M", "D": "13.11M", "T": "17.23M"}}


@dataclass
class ParameterConfig:
    """One reported configuration of a method: named modules (the task model among them) and the paper's
    printed counts (per module name, and/or "total")."""

    method: str
    setting: str
    modules: dict[str, nn.Module]
    printed: dict[str, str]
    source: str = ""
    total: bool = True  # False where modules overlap (MAL's T contains a copy of F): no total row


def printed_value(text: str) -> float:
    """'11.19M' -> 11_190_000.0; '156.93K' -> 156_930.0."""
    scale = {"K": 1e3, "M": 1e6}[text[-1]]
    return float(text[:-1]) * scale


def rounded_like(count: int, printed: str) -> str:
    """Our count in the printed count's unit and precision (so "11.18M" sits beside "11.19M")."""
    unit, decimals = printed[-1], len(printed[:-1].split(".")[1]) if "." in printed else 0
    return f"{count / {'K': 1e3, 'M': 1e6}[unit]:.{decimals}f}{unit}"


def configurations() -> list[ParameterConfig]:
    """Every registered method's reported configurations (`Strategy.parameter_configs`)."""
    from repro.strategies import STRATEGIES

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
        from pathlib import Path

        from repro.records import atomic_write_json

        atomic_write_json(Path(json_out), {"rows": table})
        print(f"wrote {json_out}")
    shown = [{**r, "parameters": f"{r['parameters']:,}"} for r in table]
    print(tabulate(shown, headers="keys", tablefmt="github"))
    mismatched = [r for r in table if r["matches"] == "no"]
    if mismatched:
        print("\nprinted counts our faithful builds do not reproduce (see REFERENCE.md section 7):")
        for r in mismatched:
            print(f"  {r['method']} {r['module']} ({r['setting']}): paper {r['paper']}, ours {r['parameters']:,}")
    return 0
