"""`python -m repro params`: counts computed from instantiated modules, beside the papers' printed counts."""

import pytest

from repro.cli import main
from repro.tools import params_table


@pytest.fixture(scope="module")
def table():
    return {(r["method"], r["setting"], r["module"]): r for r in params_table.rows()}


def test_every_registered_method_is_reported(table):
    from repro.al.strategies import STRATEGIES

    assert {m for m, _, _ in table} == set(STRATEGIES)


@pytest.mark.parametrize("method,total", [("mcdal", 11_184_222), ("ll", 11_297_867), ("vaal", 34_289_166)])
def test_mcdal_table1_totals(table, method, total):
    """MCDAL Table 1's setting: ResNet-18 (CIFAR stem, 10 classes) + the method's own modules."""
    assert table[(method, "CIFAR-10, ResNet-18", "total")]["parameters"] == total
    assert table[(method, "CIFAR-10, ResNet-18", "task model")]["parameters"] == 11_173_962


def test_methods_without_modules_report_the_task_model(table):
    assert table[("random", "CIFAR-10, ResNet-18", "task model")]["parameters"] == 11_173_962
    assert ("random", "CIFAR-10, ResNet-18", "total") not in table  # nothing printed to compare, one module
    core_set = table[("coreset", "CIFAR-10, ResNet-18", "total")]  # MCDAL Table 1 prints Core-set's 11.17M
    assert core_set["parameters"] == 11_173_962 and core_set["matches"] == "yes"


@pytest.mark.parametrize("arch,counts", [
    ("resnet18", {"F": 11_176_512, "C": 156_928, "D": 525_825, "T": 11_227_812}),
    ("vgg16", {"F": 14_723_136, "C": 12_896_768, "D": 13_108_737, "T": 17_232_036})])
def test_mal_supplementary_counts(table, arch, counts):
    for module, n in counts.items():
        row = table[("mal", f"CIFAR-100, {arch} (MAL supp. Sec. B)", module)]
        assert row["parameters"] == n and row["matches"] == "yes"


def test_printed_counts_compare_in_the_papers_rounding():
    assert params_table.rounded_like(11_184_222, "11.19M") == "11.18M"
    assert params_table.rounded_like(156_928, "156.93K") == "156.93K"
    assert params_table.printed_value("525.83K") == pytest.approx(525_830)


def test_cli_prints_the_table_and_the_mismatches(capsys):
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    assert "| mcdal " in out and "11,184,222" in out and "do not reproduce" in out


def test_vaal_modules_on_top_of_resnet18(table):
    """VAAL's VAE (z = 32) + discriminator = 23,115,204 on top of ResNet-18 (MCDAL Table 1's 34.29M)."""
    rows = [r for (m, s, mod), r in table.items() if m == "vaal" and s == "CIFAR-10, ResNet-18"]
    assert sum(r["parameters"] for r in rows if r["module"] not in ("task model", "total")) == 23_115_204
    assert table[("vaal", "CIFAR-10, ResNet-18", "total")]["matches"] == "yes"
