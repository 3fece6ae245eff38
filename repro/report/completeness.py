"""Completeness of the claims registries: every number the paper texts state (outside the references) is
covered by a claim's quote, a stated hyper-parameter's quote, or a `skipped` snippet with its reason.

Structural numbers are not claims and need no entry: figure, table, equation, section, algorithm and
appendix references ("Fig. 3", "Eqs. (2)-(4)"), citation brackets ("[12, 31]") and Markdown heading numbers.

`python -m repro.report.completeness [paper ...]` lists what is not covered (with context) per paper.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

PAPER_FILES = {"mcdal": "000_", "ads": "001_", "daal": "002_", "mal": "003_", "dal": "004_"}
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_REF_WORDS = r"(?:Fig(?:ure)?s?|Tables?|Tab|Eqs?|Equations?|Sec(?:tion)?s?|Alg(?:orithm)?s?|Appendix|Appendices|Lines?)"
_REF_NUM = r"\(?\d+(?:\.\d+)*[a-z]?\)?"
STRUCTURAL = (
    re.compile(rf"\b{_REF_WORDS}\.?\s*{_REF_NUM}(?:\s*(?:,|and|&|-|–|to)\s*{_REF_NUM})*", re.I),
    re.compile(r"\[\d+(?:\s*[,–-]\s*\d+)*\]"),  # citations
    re.compile(r"(?:^|\s)#+\s*\d+(?:\.\d+)*"),  # Markdown heading numbers
)


def normalise(text: str) -> str:
    return " ".join(text.split())


def paper_text(papers_dir: Path, paper: str) -> str:
    return next(Path(papers_dir).glob(f"{PAPER_FILES[paper]}*.txt")).read_text()


def body(text: str) -> str:
    """The text without its reference list (from the References heading to the supplementary material)."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if re.match(r"^(#+\s*)?References\s*$", ln.strip())), None)
    if start is None:
        return text
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^Supplementary Material\s*$", lines[i].strip())),
               len(lines))
    return "\n".join(lines[:start] + lines[end:])


def snippets(registry: dict) -> list[str]:
    """Every verbatim text the registry quotes: claims, stated hyper-parameters, skipped snippets."""
    out = [c["quote"] for c in registry.get("claims", [])]
    out += [h["quote"] for h in ((registry.get("protocol") or {}).get("hyperparameters") or []) if h.get("quote")]
    out += [s["text"] for s in registry.get("skipped") or []]
    return [normalise(s) for s in out if s]


def uncovered(text: str, registry: dict) -> list[tuple[str, str]]:
    """(number, context) of each number in the paper's body that no registry snippet covers."""
    t = normalise(body(text))
    covered = [False] * len(t)
    for snip in snippets(registry):
        start = t.find(snip)
        while start >= 0:
            covered[start:start + len(snip)] = [True] * len(snip)
            start = t.find(snip, start + 1)
    for pat in STRUCTURAL:
        for m in pat.finditer(t):
            covered[m.start():m.end()] = [True] * (m.end() - m.start())
    return [(m.group(), t[max(0, m.start() - 60):m.end() + 60]) for m in NUMBER.finditer(t) if not covered[m.start()]]


def numbers_in(text: str) -> int:
    return len(NUMBER.findall(normalise(body(text))))


def main(argv: list[str] | None = None) -> int:

    root = Path(__file__).resolve().parents[2]
    papers_dir = root.parent / "shared" / "papers"
    names = (argv if argv is not None else sys.argv[1:]) or list(PAPER_FILES)
    bad = 0
    for paper in names:
        reg_path = root / "paper_tables" / f"{paper}.yaml"
        reg = yaml.safe_load(reg_path.read_text()) if reg_path.is_file() else {}
        text = paper_text(papers_dir, paper)
        missing = uncovered(text, reg)
        bad += len(missing)
        print(f"{paper}: {numbers_in(text)} numbers in the body, {len(missing)} not covered")
        for num, ctx in missing:
            print(f"  {num!r}: ...{ctx}...")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
