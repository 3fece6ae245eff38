"""What every figure shares: the title line naming the profile, and an atomic PNG write."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, png: Path, title: str, profile: str, dpi: int = 120) -> None:
    fig.suptitle(f"{title}  [profile: {profile}]", fontsize=11)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(png)
