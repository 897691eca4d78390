"""Fit tables (the ``.parquet`` and ``.root`` fits of ``write_fit``) back to the fit Dataset.

A fit table holds one row per center bin (``io.fit_table``). Its metadata records, next to the
attrs, the Dataset's layout (``layout``): the bin dims, every coordinate along one dim with its
values, and every data variable's dims, dtype and attrs. ``fit_from_table`` rebuilds the
Dataset on the dense grid from the columns: bins that are not centers get NaN (counts 0,
``quality_flag`` not_a_center), as ``xslide.fit`` leaves them. So ``xslide predict`` reads a
``.parquet`` or ``.root`` fit as it reads the ``.nc``.

The files may come from anyone: the metadata is JSON only (never unpickled, never evaluated),
bounded in size and nesting, every name and type in it is checked, and a table that does not
match its layout is refused with one line naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .cf import BOUNDS_DIM
from .grid import DEFAULT_MAX_BINS
from .result import column_safe
from .solve import NOT_A_CENTER

#: the metadata key of the layout
LAYOUT_KEY = "dataset_json"
#: the metadata keys the writer adds next to the attrs (not attrs of the Dataset)
WRITER_KEYS = (LAYOUT_KEY, "terms_json", "quality_flag_meanings", "column_units_json")
#: the most bytes of metadata read (the layout lists the labels of every bin dim)
MAX_METADATA = 64 << 20
_LABEL_DIMS = ("target", "term")
_DTYPES = ("float64", "float32", "int64", "int32", "int16", "int8", "uint8", "uint16",
           "uint32", "uint64", "bool")  # fmt: skip


def _native(value):
    """A value as plain JSON: numpy scalars and arrays to Python, containers element-wise."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _native(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_native(v) for v in value]
    return value


def layout(ds: xr.Dataset) -> dict:
    """The layout of a fit Dataset, as JSON-ready values: its bin dims, its one-dimensional
    coordinates with their values, and its data variables' dims, dtypes and attrs.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xslide
    >>> from xslide.fit_tables import layout
    >>> df = pd.DataFrame({"rBin": np.repeat([0, 1], 20), "y": np.arange(40.0)})
    >>> fit = xslide.fit(df, dims=["rBin"], targets=["y"])
    >>> spec = layout(fit)
    >>> spec["dims"], spec["coords"]["rBin"]["values"], spec["data_vars"]["coef"]["dims"]
    (['rBin'], [0, 1], ['target', 'term', 'rBin'])
    """
    dims = [str(d) for d in ds["coef"].dims if d not in _LABEL_DIMS] if "coef" in ds else []
    coords = {}
    for name, coord in ds.coords.items():
        entry = {"dims": [str(d) for d in coord.dims], "dtype": str(coord.dtype)}
        entry["attrs"] = _native(dict(coord.attrs))
        # values along bin dims travel as table columns; names along label dims (the units
        # of (target, term), coef_units) in the layout
        if coord.ndim <= 1 or (coord.dtype.kind == "U" and not set(coord.dims) & set(dims)):
            entry["values"] = _native(coord.values)
        coords[str(name)] = entry
    data_vars = {
        str(name): {
            "dims": [str(d) for d in var.dims],
            "dtype": str(var.dtype),
            "attrs": _native(dict(var.attrs)),
        }
        for name, var in ds.data_vars.items()
    }
    return {"format": 1, "dims": dims, "coords": coords, "data_vars": data_vars}


# ---- the metadata, checked ----


class _Refused(ValueError):
    """A fit table that does not match its metadata (the caller names the file)."""


def _strings(value, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Refused(f"{what} must be a list of non-empty names")
    if len(set(value)) != len(value):
        raise _Refused(f"{what} repeats a name")
    return value


def _mapping(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise _Refused(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _dtype(entry: dict, what: str) -> np.dtype:
    dtype = entry.get("dtype")
    if dtype not in _DTYPES:
        raise _Refused(f"{what}: dtype {dtype!r} is not one of {list(_DTYPES)}")
    return np.dtype(dtype)


def _attrs(value, what: str) -> dict:
    """Attrs as stored: strings, numbers and lists of them (lists of numbers as arrays)."""
    out = {}
    for key, item in _mapping(value, f"{what} attrs").items():
        if isinstance(item, list):
            if all(isinstance(v, str) for v in item):
                item = list(item)
            elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in item):
                floats = any(isinstance(v, float) for v in item)
                item = np.asarray(item, dtype=np.float64 if floats else np.int64)
            else:
                raise _Refused(f"{what}: attribute {key!r} must hold numbers or strings")
        elif item is None or isinstance(item, dict):
            raise _Refused(f"{what}: attribute {key!r} must be a string, number or list")
        out[key] = item
    return out


def _label_coord(coords: dict, name: str) -> np.ndarray:
    """A bin dim's labels: unique integers."""
    entry = _mapping(coords.get(name), f"coordinate {name!r}")
    values = entry.get("values")
    if entry.get("dims") != [name] or not isinstance(values, list):
        raise _Refused(f"coordinate {name!r} must list the labels of dim {name!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise _Refused(f"coordinate {name!r} must hold integer bin labels")
    labels = np.asarray(values, dtype=np.int64) if values else np.zeros(0, np.int64)
    if np.unique(labels).size != labels.size:
        raise _Refused(f"coordinate {name!r} repeats bin labels")
    return labels


class _Layout:
    """The checked layout: bin dims and labels, targets, terms, coordinates, variables."""

    def __init__(self, meta: Mapping) -> None:
        text = meta.get(LAYOUT_KEY)
        if not isinstance(text, str):
            raise _Refused(
                f"no '{LAYOUT_KEY}' in its metadata: not a fit table of this xslide "
                "(write the fit as .nc, or refit with this version)"
            )
        spec = _mapping(_loads(text, LAYOUT_KEY), LAYOUT_KEY)
        if spec.get("format") != 1:
            raise _Refused(f"{LAYOUT_KEY}: unknown format {spec.get('format')!r}")
        self.coords = _mapping(spec.get("coords"), "coords")
        self.data_vars = _mapping(spec.get("data_vars"), "data_vars")
        self.dims = _strings(spec.get("dims"), "dims")
        if not self.dims or set(self.dims) & {*_LABEL_DIMS}:
            raise _Refused("dims must name the bin dims (not 'target' or 'term')")
        self.labels = {d: _label_coord(self.coords, d) for d in self.dims}
        size = int(np.prod([v.size for v in self.labels.values()], dtype=object))
        if size > DEFAULT_MAX_BINS:
            raise _Refused(f"the grid would have {size:,} bins, more than {DEFAULT_MAX_BINS:,}")
        self.shape = tuple(v.size for v in self.labels.values())
        self.names = {d: self._names(d) for d in _LABEL_DIMS}
        safe = [column_safe(t) for t in self.names["term"]]
        if len(set(safe)) != len(safe):
            raise _Refused(f"terms {self.names['term']} share a column name")

    def _names(self, dim: str) -> list[str]:
        entry = _mapping(self.coords.get(dim), f"coordinate {dim!r}")
        if entry.get("dims") != [dim]:
            raise _Refused(f"coordinate {dim!r} must be along dim {dim!r}")
        return _strings(entry.get("values"), f"coordinate {dim!r}")

    def pair_dim(self, dims: Sequence[str]) -> str | None:
        """The second term dim of a (target, term, term_, *bins) variable, else None."""
        extra = [d for d in dims if d not in (*self.dims, *_LABEL_DIMS)]
        if len(extra) != 1 or extra[0] not in self.coords:
            return None
        entry = self.coords[extra[0]]
        same = isinstance(entry, dict) and entry.get("values") == self.names["term"]
        return extra[0] if same else None


def _loads(text: str, what: str):
    """JSON, bounded: no more than MAX_METADATA characters, no deeper than Python allows."""
    if len(text) > MAX_METADATA:
        raise _Refused(f"{what} is larger than {MAX_METADATA >> 20} MiB")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise _Refused(f"{what} is not valid JSON ({type(err).__name__})") from None


# ---- the table, checked, on the dense grid ----


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        raise _Refused(f"column {name!r} is missing")
    values = frame[name].to_numpy()
    if values.dtype.kind not in "biuf":
        raise _Refused(f"column {name!r} must be numeric, got dtype {values.dtype}")
    return values


def _positions(frame: pd.DataFrame, spec: _Layout) -> np.ndarray:
    """The flat grid index of every table row (one row per bin, on the layout's labels)."""
    flat = np.zeros(len(frame), dtype=np.int64)
    for dim, labels in spec.labels.items():
        values = _column(frame, dim)
        if values.dtype.kind not in "iu":
            raise _Refused(f"bin column {dim!r} must hold integers, got dtype {values.dtype}")
        order = np.argsort(labels, kind="stable")
        at = np.searchsorted(labels[order], values)
        at = np.clip(at, 0, max(labels.size - 1, 0))
        if labels.size == 0 or (labels[order][at] != values).any():
            raise _Refused(f"bin column {dim!r} holds labels its coordinate does not list")
        flat = flat * labels.size + order[at]
    if np.unique(flat).size != flat.size:
        raise _Refused("a bin appears in more than one row")
    return flat


def _fill(name: str, dtype: np.dtype):
    """What ``xslide.fit`` leaves in a bin that is not a center."""
    if name == "quality_flag":
        return NOT_A_CENTER
    return np.nan if dtype.kind == "f" else False if dtype.kind == "b" else 0


def _as_dtype(values: np.ndarray, dtype: np.dtype, column: str) -> np.ndarray:
    if dtype.kind in "iub" and values.dtype.kind == "f":
        if not np.isfinite(values).all() or (values != np.round(values)).any():
            raise _Refused(f"column {column!r} must hold integers")
    if dtype.kind in "iu" and values.size:
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise _Refused(f"column {column!r} holds values beyond {dtype}")
    return values.astype(dtype)


def _columns_of(name: str, dims: Sequence[str], spec: _Layout) -> tuple[list[str], tuple] | None:
    """The table columns of a variable (in C order of its leading label dims) and the shape
    of those dims; None for a variable the table does not hold."""
    targets = spec.names["target"]
    safe = [column_safe(t) for t in spec.names["term"]]
    lead = [d for d in dims if d not in spec.dims]
    if sorted(set(dims) - set(lead)) != sorted(spec.dims) or len(set(dims)) != len(dims):
        return None
    pair = spec.pair_dim(dims)
    if not lead:
        return [name], ()
    if lead == ["target"]:
        return [f"{t}_{name}" for t in targets], (len(targets),)
    if lead == ["target", "term"]:
        return [f"{t}_{name}_{k}" for t in targets for k in safe], (len(targets), len(safe))
    if pair is not None and lead == ["target", "term", pair]:
        p = len(safe)
        columns = [
            _pair_column(t, name, safe, k, j) for t in targets for k in range(p) for j in range(p)
        ]
        return columns, (len(targets), p, p)
    return None


def _pair_column(target: str, name: str, safe: list[str], k: int, j: int) -> str:
    """The column of a symmetric variable's entry (k, j): the table holds the upper triangle."""
    k, j = min(k, j), max(k, j)
    return f"{target}_{name}_{safe[k]}_{safe[j]}"


def _variable(frame, name: str, entry, spec: _Layout, flat) -> xr.Variable | None:
    """A data variable on the dense grid, from its table columns."""
    entry = _mapping(entry, f"variable {name!r}")
    dims = _strings(entry.get("dims"), f"variable {name!r} dims")
    dtype = _dtype(entry, f"variable {name!r}")
    # canonical order: label dims as the writer loops over them, then the bin dims
    pair = spec.pair_dim(dims)
    order = [d for d in ("target", "term", pair) if d in dims] + list(spec.dims)
    if sorted(order) != sorted(dims):
        return None  # on other dims (bounds, ...): the writer leaves it out of the table
    found = _columns_of(name, order, spec)
    if found is None:
        return None  # the writer leaves such variables out of the table
    columns, lead = found
    out = np.full((*lead, int(np.prod(spec.shape))), _fill(name, dtype), dtype=dtype)
    flat_out = out.reshape(-1, out.shape[-1])
    for k, column in enumerate(columns):
        flat_out[k, flat] = _as_dtype(_column(frame, column), dtype, column)
    values = out.reshape(*lead, *spec.shape)
    var = xr.Variable(order, values, _attrs(entry.get("attrs", {}), f"variable {name!r}"))
    return var.transpose(*dims)


def _coordinate(frame, name: str, entry, spec: _Layout, flat) -> xr.Variable:
    entry = _mapping(entry, f"coordinate {name!r}")
    dims = _strings(entry["dims"], f"coordinate {name!r} dims") if entry.get("dims") else []
    attrs = _attrs(entry.get("attrs", {}), f"coordinate {name!r}")
    if name in spec.labels:
        return xr.Variable(dims, spec.labels[name], attrs)
    if name in spec.names:
        return xr.Variable(dims, np.asarray(spec.names[name], dtype=str), attrs)
    values = entry.get("values")
    names = _names_array(values)
    if names is not None:
        sizes = _other_sizes(spec)
        if names.shape != tuple(sizes.get(d, -1) for d in dims):
            raise _Refused(f"coordinate {name!r} of names does not match its dims {dims}")
        return xr.Variable(dims, names, attrs)
    dtype = _dtype(entry, f"coordinate {name!r}")
    if "values" in entry and len(dims) <= 1:
        sizes = {**dict(zip(spec.dims, spec.shape, strict=True)), **_other_sizes(spec)}
        numbers = values if isinstance(values, list) else [values]
        if not all(v is None or isinstance(v, int | float) for v in numbers):
            raise _Refused(f"coordinate {name!r} must hold numbers")
        array = np.asarray([np.nan if v is None else v for v in numbers], dtype=np.float64)
        if dims and (dims[0] not in sizes or array.size != sizes[dims[0]]):
            raise _Refused(f"coordinate {name!r} does not match its dim {dims[0]!r}")
        values = _as_dtype(array, dtype, name)
        return xr.Variable(dims, values if dims else values.reshape(()), attrs)
    if not set(dims) <= set(spec.dims):
        raise _Refused(f"coordinate {name!r} has dims {dims} beyond the bin dims")
    values = np.full(int(np.prod(spec.shape)), _fill(name, dtype), dtype=dtype)
    values[flat] = _as_dtype(_column(frame, name), dtype, name)
    full = xr.Variable(spec.dims, values.reshape(spec.shape))
    return xr.Variable(dims, full.isel({d: 0 for d in spec.dims if d not in dims}).values, attrs)


def _names_array(values) -> np.ndarray | None:
    """Names (strings) in a list, or in a list of equally long lists of them (the units of
    (target, term)); None for anything else."""
    if not isinstance(values, list) or not values:
        return None
    if all(isinstance(v, str) for v in values):
        return np.asarray(values, dtype=str)
    rows = [v for v in values if isinstance(v, list) and all(isinstance(u, str) for u in v)]
    if len(rows) != len(values) or len({len(v) for v in rows}) != 1 or not rows[0]:
        return None
    return np.asarray(rows, dtype=str)


def _other_sizes(spec: _Layout) -> dict[str, int]:
    """The sizes of the label dims (target, term and the second term dim)."""
    sizes = {d: len(v) for d, v in spec.names.items()}
    for name, entry in spec.coords.items():
        if isinstance(entry, dict) and entry.get("values") == spec.names["term"]:
            sizes[name] = len(spec.names["term"])
    return sizes


def fit_from_table(frame: pd.DataFrame, meta: Mapping, source: str | Path) -> xr.Dataset:
    """Rebuild the fit Dataset from a fit table and its metadata (the writer's attrs, terms
    and layout).

    Parameters
    ----------
    frame : the table, one row per center bin.
    meta : the table's metadata: the Dataset attrs plus the writer's keys (``WRITER_KEYS``).
    source : the file, named in the one-line errors.

    Returns
    -------
    The fit Dataset on the dense grid.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xslide
    >>> from xslide.io import fit_metadata, fit_table
    >>> from xslide.fit_tables import fit_from_table
    >>> df = pd.DataFrame({"rBin": np.repeat([0, 2], 20), "y": np.arange(40.0)})
    >>> fit = xslide.fit(df, dims=["rBin"], targets=["y"])
    >>> back = fit_from_table(fit_table(fit), fit_metadata(fit), "fit.parquet")
    >>> back.coef.sel(term="Intercept").values.tolist()
    [[9.5, nan, 29.5]]
    """
    try:
        spec = _Layout(meta)
        flat = _positions(frame, spec)
        variables = {}
        for name, entry in spec.data_vars.items():
            var = _variable(frame, name, entry, spec, flat)
            if var is not None:
                variables[name] = var
        if "coef" not in variables:
            raise _Refused("no variable 'coef'")
        coords = {
            name: _coordinate(frame, name, entry, spec, flat)
            for name, entry in spec.coords.items()
            if BOUNDS_DIM not in (entry.get("dims") or [])  # rebuilt from the edges below
        }
        attrs = _attrs({k: v for k, v in meta.items() if k not in WRITER_KEYS}, "the fit")
        return _with_bounds(xr.Dataset(variables, coords=coords, attrs=attrs))
    except (_Refused, ValueError, TypeError) as err:
        text = " ".join(str(err).split())
        raise ValueError(f"{source}: not a readable xslide fit table: {text}") from None


def _with_bounds(ds: xr.Dataset) -> xr.Dataset:
    """The CF bounds of every ``{x}_center`` coordinate, from the edges it carries (the
    table holds one column per bin, so the (dim, nv) bounds travel as those edges)."""
    for name, coord in list(ds.coords.items()):
        bounds = coord.attrs.get("bounds")
        edges = np.asarray(coord.attrs.get("edges", []), dtype=np.float64).ravel()
        if not bounds or coord.ndim != 1 or edges.size < 2:
            continue
        bins = np.asarray(ds[coord.dims[0]].values)
        inside = (bins >= 0) & (bins < edges.size - 1)
        at = np.clip(bins, 0, edges.size - 2)
        pairs = np.stack([edges[at], edges[at + 1]], axis=1)
        values = np.where(inside[:, None], pairs, np.nan)
        long_name = f"{str(name).removesuffix('_center')} at the bin edges (lower, upper)"
        ds.coords[str(bounds)] = ((coord.dims[0], BOUNDS_DIM), values, {"long_name": long_name})
    return ds


# ---- the files ----


def read_fit_table(path: str | Path) -> xr.Dataset:
    """Read a ``.parquet`` or ``.root`` fit written by ``write_fit`` back into the Dataset."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        frame, meta = _read_parquet(path)
    else:
        frame, meta = _read_root(path)
    return fit_from_table(frame, meta, path)


def _metadata(text, path: Path, what: str) -> dict:
    try:
        meta = _loads(text, what)
    except _Refused as err:
        raise ValueError(f"{path}: not a readable xslide fit table: {err}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: not a readable xslide fit table: {what} is not a JSON object")
    return meta


def _read_parquet(path: Path) -> tuple[pd.DataFrame, dict]:
    from ._optional import require
    from .io import METADATA_KEY, Source, _reading

    pq = require("pyarrow.parquet", "reading parquet fits")
    with _reading(Source(path, "parquet")):
        parquet = pq.ParquetFile(path)
        stored = (parquet.schema_arrow.metadata or {}).get(METADATA_KEY.encode())
        if stored is None:
            raise ValueError(f"{path}: no '{METADATA_KEY}' metadata: not a fit written by xslide")
        if parquet.metadata.num_rows > DEFAULT_MAX_BINS:
            raise ValueError(f"{path}: more rows than the {DEFAULT_MAX_BINS:,} bins of a fit")
        meta = _metadata(stored.decode("utf-8", "replace"), path, f"metadata '{METADATA_KEY}'")
        frame = parquet.read().to_pandas()
    return frame, meta


def _read_root(path: Path) -> tuple[pd.DataFrame, dict]:
    from ._optional import require
    from .io import TREE_NAME, Source, _reading

    uproot = require("uproot", "reading ROOT fits")
    name = f"{TREE_NAME}_attrs"
    with _reading(Source(path, "root")), uproot.open(path) as file:
        classes = {key.split(";")[0]: cls for key, cls in file.classnames().items()}
        if classes.get(TREE_NAME) != "TTree" or classes.get(name) != "TObjString":
            raise ValueError(
                f"{path}: not a fit written by xslide (needs TTree {TREE_NAME!r} and "
                f"TObjString {name!r}; found {_shown(classes)})"
            )
        if file.key(name).data_uncompressed_bytes > MAX_METADATA:
            raise ValueError(f"{path}: {name!r} is larger than {MAX_METADATA >> 20} MiB")
        meta = _metadata(str(file[name]), path, name)
        tree = file[TREE_NAME]
        if tree.num_entries > DEFAULT_MAX_BINS:
            raise ValueError(f"{path}: more rows than the {DEFAULT_MAX_BINS:,} bins of a fit")
        arrays = tree.arrays(library="np")
    frame = pd.DataFrame({str(k): np.asarray(v) for k, v in arrays.items()})
    return frame, meta


def _shown(classes: Mapping[str, str]) -> str:
    items = [f"{k} ({v})" for k, v in list(classes.items())[:5]]
    return ", ".join(items) + (", ..." if len(classes) > 5 else "") if items else "nothing"
