"""What `python -m repro params` reports per method: the configurations the papers print parameter counts for,
and the printed counts (a strategy declares its configurations; repro/tools/params_table.py counts them)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

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


