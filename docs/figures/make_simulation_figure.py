"""Draw docs/figures/simulation_model.png: slice profiles, slabs, gaps and HR-slice weights.

Run from the repository root: ``python docs/figures/make_simulation_figure.py``. Every curve and bar
comes from medsr.transforms.functional (profile_cdf, slab_weights), the code the simulation runs.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from medsr import geometry  # noqa: E402
from medsr.transforms.functional import profile_cdf, slab_weights  # noqa: E402

HR_MM = 1.0  # HR slice spacing
N_HR = 16  # HR slices drawn
SHOWN = 2  # LR slice whose HR-slice weights are drawn as bars
CASES = [
    ("contiguous: gaussian, thickness 3 mm, spacing 3 mm", "gaussian", 3.0, 3.0),
    ("gap: boxcar, thickness 2 mm, spacing 3 mm", "boxcar", 2.0, 3.0),
    ("overlap, non-integer ratio: gaussian, thickness 4 mm, spacing 2.5 mm", "gaussian", 4.0, 2.5),
]


def draw_case(ax: plt.Axes, title: str, profile: str, thickness: float, spacing: float) -> None:
    """One panel; x is mm from the HR volume's edge (HR slice j spans [j, j + 1] mm)."""
    weights = slab_weights(N_HR, HR_MM, thickness, spacing, profile)
    n_lr = weights.shape[0]
    centres_mm = (geometry.slab_centres(n_lr, spacing / HR_MM) + 0.5) * HR_MM
    for j in range(N_HR + 1):
        ax.axvline(j * HR_MM, color="0.85", lw=0.8, zorder=0)
    for k in range(n_lr):
        ax.axvspan(k * spacing, (k + 1) * spacing, color=("C0" if k % 2 else "C1"), alpha=0.07, lw=0)
    cdf = profile_cdf(profile, thickness)
    x = np.linspace(0, N_HR * HR_MM, 2000)
    dx = 1e-3
    for k, c in enumerate(centres_mm):
        density = (cdf(x - c + dx) - cdf(x - c - dx)) / (2 * dx)
        ax.plot(x, density / density.max(), color="C3" if k == SHOWN else "0.35", lw=1.8 if k == SHOWN else 1)
        ax.plot([c, c], [0, 1.08], color="0.35", lw=0.8, ls=":")
        ax.text(c, 1.1, f"LR {k}", ha="center", va="bottom", fontsize=7)
    row = weights[SHOWN]
    ax.bar((np.arange(N_HR) + 0.5) * HR_MM, row / row.max() * 0.6, width=0.8 * HR_MM, color="C3", alpha=0.35)
    if spacing > thickness and profile == "boxcar":
        for k in range(n_lr - 1):
            gap = (centres_mm[k] + thickness / 2, centres_mm[k] + spacing - thickness / 2)
            ax.annotate(
                "", xy=(gap[1], 0.15), xytext=(gap[0], 0.15), arrowprops={"arrowstyle": "<->", "lw": 0.8}
            )
            ax.text(sum(gap) / 2, 0.2, "gap", ha="center", fontsize=7)
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_ylim(0, 1.3)
    ax.set_yticks([])
    ax.set_title(
        f"bars: HR-slice weights of LR {SHOWN} (sum 1, max {row.max():.2f})", fontsize=8, loc="right"
    )


def main(out: Path = Path(__file__).with_name("simulation_model.png")) -> Path:
    fig, axes = plt.subplots(len(CASES), 1, figsize=(8, 7), sharex=True)
    for ax, case in zip(axes, CASES, strict=True):
        draw_case(ax, *case)
    axes[-1].set_xlabel("position along the slice axis, mm from the volume edge (grey lines: 1 mm HR slices)")
    axes[-1].set_xlim(0, N_HR * HR_MM)
    fig.suptitle("Slice profiles on slab centres (shaded: slabs) and their weights on the HR slices")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(main())
