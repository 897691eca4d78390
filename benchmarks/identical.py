"""Bit-identity check of the fit results on the benchmark scenarios.

``python benchmarks/identical.py save digests.json`` records a SHA-256 digest of every output
column (seed DataFrame) and variable (Dataset) for a set of fits of the medium and sparse
scenarios; ``python benchmarks/identical.py check digests.json`` recomputes them and lists any
that differ. A refactoring that claims "no behaviour change" runs ``save`` before and ``check``
after, on the same machine (numba's SIMD reductions may round differently elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np

import xslide
from xslide.bench import DIMS, PREDICTORS, SCENARIOS, TARGETS, make_rows

# (scenario, row scale, options): every windowing path and every post-solve step
CASES = {
    "medium_ols": ("medium", 1.0, {}),
    "medium_median_weighted": ("medium", 0.3, {"weights_column": "w"}),
    "medium_clip": ("medium", 0.3, {"n_sigma_cut": 3.0}),
    "medium_trend_shrink": ("medium", 0.3, {"trend": 1, "boundary": "shrink"}),
    "medium_gaussian_periodic": ("medium", 0.3, {"kernel": "gaussian", "boundary": "periodic"}),
    "medium_mirror_grid": ("medium", 0.3, {"boundary": "mirror", "centers": "grid"}),
    "sparse_ols": ("sparse", 1.0, {}),
    "sparse_epanechnikov_trend": ("sparse", 0.5, {"kernel": "epanechnikov", "trend": 1}),
}


def _digest(values) -> str:
    array = np.asarray(values)
    if array.dtype == object:
        array = np.asarray([str(v) for v in array.ravel()])
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def digests() -> dict[str, dict[str, str]]:
    out = {}
    for case, (name, scale, options) in CASES.items():
        s = SCENARIOS[name]
        dims = list(DIMS[: len(s.shape)])
        window = dict(zip(dims, s.window, strict=True))
        df = make_rows(s, scale=scale)
        frame = xslide.make_sliding_window_fit(df, dims, window, TARGETS, PREDICTORS, **options)
        out[case] = {c: _digest(frame[c].to_numpy()) for c in frame.columns}
        fit_options = {("weights" if k == "weights_column" else k): v for k, v in options.items()}
        ds = xslide.fit(df, dims, TARGETS, PREDICTORS, window, **fit_options)
        out[case].update({f"ds.{v}": _digest(ds[v].values) for v in ds.variables})
        print(f"{case}: {len(out[case])} digests", flush=True)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("save", "check"):
        print(__doc__)
        return 2
    current = digests()
    if argv[0] == "save":
        with open(argv[1], "w") as fh:
            json.dump(current, fh, indent=1, sort_keys=True)
        return 0
    with open(argv[1]) as fh:
        saved = json.load(fh)
    differ = [
        f"{case}.{name}"
        for case in saved
        for name in set(saved[case]) | set(current.get(case, {}))
        if saved[case].get(name) != current.get(case, {}).get(name)
    ]
    print("\n".join(differ) if differ else "bit-identical: every digest matches")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
