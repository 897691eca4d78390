"""Figure and table of what each boundary mode (and trend=1 or 2) does at the edge of a dim.

Run ``python docs/edge_bias.py`` (needs matplotlib) to rewrite ``docs/edge_bias.png`` and print
the README's table. The field is linear in the bin index plus a curvature, the worst case for
a sliding mean at an edge; it is fitted without noise, so what a fit returns is its bias.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import xslide

N_BINS, PER_BIN, HALF = 20, 20, 3


def truth(phi: np.ndarray) -> np.ndarray:
    return 0.5 * phi + 0.01 * (phi - N_BINS / 2) ** 2


def rows() -> pd.DataFrame:
    phi = np.repeat(np.arange(N_BINS), PER_BIN)
    return pd.DataFrame({"phi": phi, "y": truth(phi)})


def fits() -> dict[str, np.ndarray]:
    df = rows()
    cases = {
        "truncate": {"boundary": "truncate"},
        "mirror": {"boundary": "mirror"},
        "shrink": {"boundary": "shrink"},
        "periodic": {"boundary": "periodic", "extent": {"phi": (0, N_BINS - 1)}},
        "truncate + trend=1": {"boundary": "truncate", "trend": 1},
        "shrink + trend=1": {"boundary": "shrink", "trend": 1},
        "truncate + trend=2": {"boundary": "truncate", "trend": 2},
        "shrink + trend=2": {"boundary": "shrink", "trend": 2},
    }
    return {
        name: xslide.make_sliding_window_fit(
            df, ["phi"], {"phi": HALF}, ["y"], [], **options
        ).y_intercept.to_numpy()
        for name, options in cases.items()
    }


def main() -> None:
    phi = np.arange(N_BINS)
    results = fits()
    print("| boundary | bias at bin 0 | bias at bin 1 | bias in the middle |")
    print("|---|---|---|---|")
    for name, values in results.items():
        bias = values - truth(phi)
        bias = np.round(bias, 3) + 0.0  # no -0.000
        print(f"| {name} | {bias[0]:+.3f} | {bias[1]:+.3f} | {bias[N_BINS // 2]:+.3f} |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in results.items():
        if name != "periodic":  # a non-periodic field: periodic wraps the far edge in
            ax.plot(phi, values - truth(phi), marker="o", ms=3, label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("bin")
    ax.set_ylabel("fitted local value - truth")
    ax.set_title(f"Edge bias of a ±{HALF}-bin window on y = 0.5 bin + 0.01 (bin - 10)²")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(__file__).with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()
