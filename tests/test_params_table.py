"""`python -m repro params`: counts computed from instantiated modules, beside the papers' printed counts."""

import pytest

from repro import params_table
from repro.cli import main


@pytest.fixture(scope="module")
def table():
    return {(r["method"], r["setting"], r["module"]): r for r in params_table.rows()}


def test_every_registered_method_is_reported(table):
    from repro.strategies import STRATEGIES

    assert {m for m, _, _ in table} == set(STRATEGIES)


@pytest.mark.parametrize("method,total", [("coreset", 11_173_962), ("random", 11_173_962), ("mcdal", 11_184_222)])
def test_mcdal_table1_totals(table, method, total):
    assert table[(method, "CIFAR-10, ResNet-18", "total")]["parameters"] == total


def test_printed_counts_compare_in_the_papers_rounding():
    assert params_table.rounded_like(11_184_222, "11.19M") == "11.18M"
    assert params_table.rounded_like(156_928, "156.93K") == "156.93K"
    assert params_table.printed_value("525.83K") == pytest.approx(525_830)


def test_cli_prints_the_table_and_the_mismatches(capsys):
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    assert "| mcdal " in out and "11,184,222" in out and "do not reproduce" in out
