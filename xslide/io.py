"""Files in and out: rows from parquet, CSV and ROOT TTrees; fits to netCDF, zarr, parquet, ROOT.

Inputs are chosen by suffix: ``.parquet``/``.pq``, ``.csv`` (also ``.csv.gz``, ``.csv.bz2``,
``.csv.xz``, ``.csv.zst``) and ``file.root:tree`` (the tree may be left out when the file holds
one). Pickle is refused everywhere: unpickling a file runs code from it.

Fit outputs (``write_fit``) are chosen by suffix too:

- ``.nc`` / ``.zarr``: the fit Dataset as is (attrs included), reopened with xarray; ``.nc`` is
  NETCDF4 (netCDF4 needed) with the variables of ``COMPRESS_MIN_SIZE`` values or more
  zlib-compressed, or NETCDF3_64BIT (uncompressed, int64 stored as int32) only when asked;
- ``.parquet``: a flat table, one row per center bin (a bin with
  ``quality_flag != not_a_center`` for some target), columns in this order: the bin dims,
  physical bin-center coords (``{x}_center``) if any, then per target ``t`` and term ``k``
  ``{t}_coef_{k}``, ``{t}_stderr_{k}``, the covariance's upper triangle ``{t}_cov_{k}_{l}``
  (when the fit has ``cov``), then ``{t}_{v}`` for each per-target variable ``v``
  (``mean``, ``std``, ``median``, ``entries``, ``r_squared``, ``rmse``, ``n_fitted``,
  ``n_rejected``, ``quality_flag`` as integer codes), then the per-bin ``n_neighbors_used``,
  ``n_rows_aggregated``, ``effective_window_fraction``. Term names are made column-safe
  (non-alphanumerics -> ``_``: ``np.log(r)`` -> ``np_log_r_``). The Dataset attrs, the term
  names, the quality-flag meanings and the known units of the columns
  (``column_units_json``) are in the file's key-value metadata under ``xslide`` (JSON) and
  come back as ``pandas.read_parquet(...).attrs``, with the Dataset's layout
  (``dataset_json``) from which ``open_fit`` rebuilds the fit (``xslide.fit_tables``);
- ``.root``: the same columns as a TTree ``xslide`` (readable with ROOT's ``TTree::Draw``) and
  the same JSON metadata as a ``TObjString`` ``xslide_attrs``.

Outputs are written atomically: to a hidden temporary sibling (``.name.<pid>.tmp``), renamed over
the target only once complete, and removed on any error or Ctrl-C, so a previous file is never
left half-written or destroyed. ``check_output`` refuses, before any work, an output whose
directory is missing (none is created), that is one of the inputs, or that would replace
something of another kind (a directory by a file, a file or a non-zarr directory by a store).
Errors of the format libraries while reading (a truncated parquet, an empty CSV) name the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd
import xarray as xr

from . import cf
from ._optional import require
from .fit_tables import LAYOUT_KEY, layout
from .parallel import NoBar, may_show, progress_bar
from .result import COMPRESS_MIN_SIZE, column_safe
from .solve import NOT_A_CENTER

#: rows per batch when streaming (the same as xslide's own parquet streaming)
CHUNK_ROWS = 1 << 18
#: rows per step when a ROOT tree is read whole (the progress bar moves at each step)
ROOT_STEP = 1 << 20
ROW_SUFFIXES = (".parquet", ".pq", ".csv", ".root")
FIT_SUFFIXES = (".nc", ".zarr", ".parquet", ".root")
ROWS_OUT_SUFFIXES = (".parquet", ".csv", ".root")
_CSV_COMPRESSED = (".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst")
_PICKLE = (".pkl", ".pickle", ".pck", ".pcl", ".joblib", ".npy", ".npz")
TREE_NAME = "xslide"
METADATA_KEY = "xslide"
NetcdfFormat = Literal["NETCDF4", "NETCDF3_64BIT"]
NETCDF_FORMATS: tuple[str, ...] = get_args(NetcdfFormat)


@dataclass(frozen=True)
class Source:
    """One input: its file, its format ('parquet', 'csv', 'root') and, for ROOT, the tree."""

    path: Path
    kind: str
    tree: str | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.tree}" if self.tree else str(self.path)


def _refuse_pickle(name: str) -> None:
    if name.lower().endswith(_PICKLE):
        raise ValueError(
            f"{name}: pickle/numpy-object files are refused (loading them can run arbitrary code);"
            " convert the rows to parquet, CSV or ROOT"
        )


def parse_source(path_or_spec: str | Path, default: str | None = None) -> Source:
    """Parse an input path (``rows.parquet``, ``rows.csv``, ``file.root:tree``) by suffix.

    ``default``: the format of a path whose suffix says none (else it is refused).
    """
    text = str(path_or_spec)
    tree = None
    if ":" in text and not text.lower().endswith(ROW_SUFFIXES + _CSV_COMPRESSED):
        head, _, tail = text.rpartition(":")
        if head.lower().endswith(".root"):
            text, tree = head, tail or None
    _refuse_pickle(text)
    lower = text.lower()
    if lower.endswith((".parquet", ".pq")):
        return Source(Path(text), "parquet")
    if lower.endswith((".csv", *_CSV_COMPRESSED)):
        return Source(Path(text), "csv")
    if lower.endswith(".root"):
        return Source(Path(text), "root", tree)
    if default is not None:
        return Source(Path(text), default)
    raise ValueError(
        f"{text}: unknown input format; expected a suffix among "
        f"{[*ROW_SUFFIXES, *_CSV_COMPRESSED]} ('file.root:tree' for ROOT)"
    )


def _exists(source: Source) -> None:
    if not source.path.exists():
        raise FileNotFoundError(f"{source.path}: no such file")


@contextlib.contextmanager
def _reading(source: Source) -> Iterator[None]:
    """Name the file in the errors of the format libraries (a truncated parquet, an empty CSV):
    theirs rarely say which input they were reading."""
    try:
        yield
    except (KeyError, MemoryError):  # missing columns or trees are named already
        raise
    except Exception as err:
        text = " ".join(str(err).split()) or type(err).__name__
        if str(source.path) in text:
            raise
        raise ValueError(f"{source}: cannot be read as {source.kind} ({text})") from err


def root_tree(source: Source, file):
    """The tree (TTree or RNTuple) of a ROOT file: the named one, or the only one."""
    trees = [
        key.split(";")[0]
        for key, cls in file.classnames().items()
        if cls == "TTree" or cls.endswith("RNTuple")
    ]
    name = source.tree
    if name is None:
        if len(set(trees)) != 1:
            raise ValueError(
                f"{source.path} holds trees {sorted(set(trees))}; name one as 'file.root:tree'"
            )
        name = trees[0]
    if name not in trees:
        raise KeyError(f"{source.path}: no tree {name!r}; trees: {sorted(set(trees))}")
    return file[name]


def available_columns(path_or_spec: str | Path | Source) -> list[str]:
    """The column names of an input, read from its schema/header only."""
    source = path_or_spec if isinstance(path_or_spec, Source) else parse_source(path_or_spec)
    _exists(source)
    if source.kind == "parquet":
        pq = require("pyarrow.parquet", "reading parquet files")
        with _reading(source):
            return list(pq.ParquetFile(source.path).schema_arrow.names)
    if source.kind == "csv":
        with _reading(source):
            return [str(c) for c in pd.read_csv(source.path, nrows=0).columns]
    uproot = require("uproot", "reading ROOT files")
    with _reading(source), uproot.open(source.path) as file:
        return [str(k) for k in root_tree(source, file).keys()]


def _check_columns(source: Source, columns: Sequence[str] | None) -> list[str] | None:
    if columns is None:
        return None
    columns = list(dict.fromkeys(columns))
    known = available_columns(source)
    missing = [c for c in columns if c not in known]
    if missing:
        raise KeyError(f"{source}: column(s) {missing} not found; available columns: {known}")
    return columns


def read_rows(
    path_or_spec: str | Path, columns: Sequence[str] | None = None, *, progress: bool | None = None
) -> pd.DataFrame:
    """Read all rows of one input into a DataFrame.

    Parameters
    ----------
    path_or_spec : ``rows.parquet``, ``rows.csv`` or ``file.root:tree``.
    columns : the columns to read (all when None); a missing one raises a KeyError naming it.
    progress : a progress bar of the rows read: True, False, or None (on a terminal, once
        reading has lasted a few seconds).

    Returns
    -------
    pandas.DataFrame with a fresh RangeIndex.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> from xslide.io import read_rows
    >>> path = os.path.join(tempfile.mkdtemp(), "rows.parquet")
    >>> pd.DataFrame({"rBin": [0, 1, 1], "dX": [0.1, 0.2, 0.3]}).to_parquet(path)
    >>> read_rows(path, ["dX"], progress=False)["dX"].tolist()
    [0.1, 0.2, 0.3]
    """
    source = parse_source(path_or_spec)
    total = count_rows([source]) if may_show(progress) else None
    with progress_bar(total, progress, "xslide reading", " rows", scale=True) as bar:
        return read_source(source, columns, bar)


def count_rows(sources: Sequence[Source]) -> int | None:
    """Rows in all inputs when their metadata says so cheaply (parquet, ROOT), else None (also
    when a file cannot be opened: reading it says why)."""
    total = 0
    try:
        for source in sources:
            if source.kind == "parquet":
                pq = require("pyarrow.parquet", "reading parquet files")
                total += pq.ParquetFile(source.path).metadata.num_rows
            elif source.kind == "root":
                uproot = require("uproot", "reading ROOT files")
                with uproot.open(source.path) as file:
                    total += int(root_tree(source, file).num_entries)
            else:
                return None
    except Exception:
        return None
    return int(total)


def read_source(source: Source, columns: Sequence[str] | None, bar=None) -> pd.DataFrame:
    """All rows of one input (``read_rows``), adding the rows read to ``bar`` as they come:
    parquet row group by row group, ROOT in steps, CSV at once."""
    bar = bar or NoBar()
    columns = _check_columns(source, columns)
    if source.kind == "parquet" and source.path.is_dir():  # a dataset directory
        require("pyarrow", "reading parquet files")
        with _reading(source):
            frame = pd.read_parquet(source.path, columns=columns).reset_index(drop=True)
        bar.update(len(frame))
        return frame
    if source.kind == "parquet":
        pa = require("pyarrow", "reading parquet files")
        pq = require("pyarrow.parquet", "reading parquet files")
        with _reading(source):
            file = pq.ParquetFile(source.path)
            groups = []
            for i in range(file.num_row_groups):
                groups.append(file.read_row_group(i, columns=columns, use_pandas_metadata=True))
                bar.update(groups[-1].num_rows)
            table = pa.concat_tables(groups) if groups else file.schema_arrow.empty_table()
            if not groups and columns is not None:
                table = table.select(columns)
            return table.to_pandas().reset_index(drop=True)
    if source.kind == "csv":
        with _reading(source):
            frame = pd.read_csv(source.path, usecols=columns)
        bar.update(len(frame))
        return frame
    uproot = require("uproot", "reading ROOT files")
    with _reading(source), uproot.open(source.path) as file:
        tree = root_tree(source, file)
        names = set(tree.keys() if columns is None else columns)
        frames = []
        for frame in tree.iterate(
            filter_name=lambda name: name in names, step_size=ROOT_STEP, library="pd"
        ):
            frames.append(frame)
            bar.update(len(frame))
        if not frames:
            frames = [tree.arrays(filter_name=lambda name: name in names, library="pd")]
        frame = frames[0] if len(frames) == 1 else pd.concat(frames)
    return frame[columns].reset_index(drop=True) if columns else frame.reset_index(drop=True)


def iter_batches(
    paths: str | Path | Source | Iterable[str | Path | Source],
    columns: Sequence[str] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    *,
    arrow: bool = False,
) -> Iterator:
    """Yield the rows of one or several inputs as batches of at most ``chunk_rows`` rows.

    Parameters
    ----------
    paths : one input or several, chained in order (parquet, CSV, ``file.root:tree``, or a
        parsed ``Source``).
    columns : the columns to read (all when None); checked against every input first.
    chunk_rows : rows per batch (parquet batches never span row groups, so may be smaller).
    arrow : yield parquet batches as ``pyarrow.RecordBatch`` (no conversion to pandas).

    Yields
    ------
    pandas.DataFrame (or pyarrow.RecordBatch for parquet with ``arrow=True``).
    """
    if isinstance(paths, str | Path | Source):
        paths = [paths]
    if int(chunk_rows) < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    sources = [p if isinstance(p, Source) else parse_source(p) for p in paths]
    checked = [_check_columns(s, columns) for s in sources]  # fail before the first batch
    for source, names in zip(sources, checked, strict=True):
        _exists(source)
        with _reading(source):
            yield from _source_batches(source, names, int(chunk_rows), arrow)


def _source_batches(source: Source, names: list[str] | None, chunk_rows: int, arrow: bool):
    """The batches of one input (``iter_batches`` names the file in its errors)."""
    if source.kind == "parquet":
        pq = require("pyarrow.parquet", "reading parquet files")
        parquet = pq.ParquetFile(source.path, pre_buffer=False)
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=names):
            yield batch if arrow else batch.to_pandas()
    elif source.kind == "csv":
        with pd.read_csv(source.path, usecols=names, chunksize=chunk_rows) as reader:
            # a header without rows gives object columns, which would spoil the stream's dtypes
            yield from (frame for frame in reader if len(frame))
    else:
        uproot = require("uproot", "reading ROOT files")
        with uproot.open(source.path) as file:
            tree = root_tree(source, file)
            wanted = set(tree.keys() if names is None else names)
            for frame in tree.iterate(
                filter_name=lambda name, wanted=wanted: name in wanted,
                step_size=chunk_rows,
                library="pd",
            ):
                yield frame[names] if names else frame


def _native(value):
    """An attr value as plain JSON (numpy scalars and arrays to Python)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def fit_metadata(ds: xr.Dataset) -> dict:
    """The attrs, term names and quality-flag meanings of a fit, as JSON-ready values."""
    meta = {k: _native(v) for k, v in ds.attrs.items()}
    if "term" in ds.coords:
        meta["terms_json"] = json.dumps({column_safe(str(t)): str(t) for t in ds["term"].values})
    if "quality_flag" in ds:
        meta["quality_flag_meanings"] = str(ds["quality_flag"].attrs.get("flag_meanings", ""))
    if "coef" in ds:  # what xslide predict needs to rebuild the Dataset from the table
        meta[LAYOUT_KEY] = json.dumps(layout(ds))
    return meta


def _grid_dims(ds: xr.Dataset) -> list[str]:
    for name in ("n_rows_aggregated", "n_neighbors_used", "rows"):
        if name in ds:
            return [str(d) for d in ds[name].dims]
    return [str(d) for d in ds.dims if d not in ("target", "term", "term_")]


def fit_table(ds: xr.Dataset) -> pd.DataFrame:
    """The fit as a flat table, one row per center bin (the layout of the module docstring)."""
    dims = _grid_dims(ds)
    shape = tuple(ds.sizes[d] for d in dims)
    if "quality_flag" in ds:
        flags = ds["quality_flag"].transpose("target", *dims).values
        center = (flags != NOT_A_CENTER).any(axis=0).reshape(-1)
    else:
        center = np.ones(int(np.prod(shape)), dtype=bool)
    mesh = np.meshgrid(*(ds[d].values for d in dims), indexing="ij")
    columns = {d: m.reshape(-1)[center] for d, m in zip(dims, mesh, strict=True)}
    for name, coord in ds.coords.items():
        if name in dims or not coord.dims or not set(coord.dims) <= set(dims):
            continue  # bin dims themselves, and target/term labels
        values = coord.variable.set_dims(dict(zip(dims, shape, strict=True))).transpose(*dims)
        columns[str(name)] = values.values.reshape(-1)[center]
    targets = [str(t) for t in ds["target"].values] if "target" in ds.coords else []
    terms = [str(t) for t in ds["term"].values] if "term" in ds.coords else []
    by_term = [v for v in ds.data_vars if set(ds[v].dims) == {"target", "term", *dims}]
    by_target = [v for v in ds.data_vars if set(ds[v].dims) == {"target", *dims}]
    by_pair = [v for v in ds.data_vars if set(ds[v].dims) == {"target", "term", "term_", *dims}]
    per_bin = [v for v in ds.data_vars if set(ds[v].dims) == set(dims)]
    safe = [column_safe(term) for term in terms]
    for t, target in enumerate(targets):
        for name in by_term:
            values = ds[name].transpose("target", "term", *dims).values[t]
            for k in range(len(terms)):
                columns[f"{target}_{name}_{safe[k]}"] = values[k].reshape(-1)[center]
        for name in by_pair:  # symmetric (the covariance): the upper triangle only
            values = ds[name].transpose("target", "term", "term_", *dims).values[t]
            for k in range(len(terms)):
                for j in range(k, len(terms)):
                    key = f"{target}_{name}_{safe[k]}_{safe[j]}"
                    columns[key] = values[k, j].reshape(-1)[center]
        for name in by_target:
            values = ds[name].transpose("target", *dims).values[t]
            columns[f"{target}_{name}"] = values.reshape(-1)[center]
    for name in per_bin:
        columns[str(name)] = ds[name].transpose(*dims).values.reshape(-1)[center]
    frame = pd.DataFrame(columns)
    frame.attrs.update(fit_metadata(ds))
    frame.attrs.update(_column_units(ds, list(columns), targets, by_term + by_target, safe))
    return frame


def _column_units(ds: xr.Dataset, names: list[str], targets, variables, safe) -> dict[str, str]:
    """``{'column_units_json': ...}``: the unit of each table column where known (the
    Dataset's CF ``units``, ``target_units`` and ``coef_units``), or {} when none is."""
    units = {n: str(ds[n].attrs["units"]) for n in names if n in ds and "units" in ds[n].attrs}
    for t, target in enumerate(targets):
        for name in variables:
            if "term" in ds[name].dims and "coef_units" in ds.coords:
                for k, term in enumerate(safe):
                    units[f"{target}_{name}_{term}"] = str(ds["coef_units"].values[t, k])
            elif "units" in ds[name].attrs:
                units[f"{target}_{name}"] = str(ds[name].attrs["units"])
            elif cf.FIT_VARIABLES.get(name, ("", None))[1] == "target" and "target_units" in ds:
                units[f"{target}_{name}"] = str(ds["target_units"].values[t])
    known = {name: unit for name, unit in units.items() if unit and name in names}
    return {"column_units_json": json.dumps(known)} if known else {}


def _write_root_table(frame: pd.DataFrame, path: Path, tree: str, meta: dict | None) -> None:
    uproot = require("uproot", "writing ROOT files")
    branches = {}
    for name, column in frame.items():
        values = column.to_numpy()
        if values.dtype.kind == "b":
            values = values.astype(np.bool_)
        elif values.dtype.kind in "iu":
            values = values.astype(np.int64 if values.dtype.kind == "i" else np.uint64)
        elif values.dtype.kind == "f":
            values = values.astype(np.float64)
        else:
            raise TypeError(
                f"column {name!r} of dtype {column.dtype} cannot be written to a ROOT TTree "
                "(numbers and booleans only)"
            )
        branches[str(name)] = values
    with uproot.recreate(path) as file:
        out = file.mktree(tree, {name: values.dtype for name, values in branches.items()})
        if len(frame):
            out.extend(branches)
        if meta is not None:
            file[f"{tree}_attrs"] = json.dumps(meta)


class OutputPathError(ValueError):
    """An output that cannot be written safely: an unknown suffix, a missing or read-only
    directory, one of the inputs, or something of another kind in its place."""


def check_output(
    path: str | Path, suffixes: Sequence[str], inputs: Iterable[str | Path | Source] = ()
) -> Path:
    """Check an output path before any work is done (``write_fit``/``write_rows`` check again).

    Parameters
    ----------
    path : the output; its suffix must be one of ``suffixes``.
    suffixes : ``FIT_SUFFIXES`` or ``ROWS_OUT_SUFFIXES``.
    inputs : files the output must not be (an input is never overwritten).

    Returns
    -------
    The path. Raises OutputPathError (a ValueError) naming it.
    """
    path = Path(path)
    _refuse_pickle(path.name)
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        what = "fit" if set(suffixes) <= set(FIT_SUFFIXES) else "rows"
        raise OutputPathError(
            f"{path}: unknown {what} output format; expected one of {tuple(suffixes)}"
        )
    target = _final(path)
    parent = target.parent
    if not parent.is_dir():
        why = "is not a directory" if parent.exists() else "does not exist (it is not created)"
        raise OutputPathError(f"{path}: the output directory {parent} {why}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path}: the output directory {parent} is not writable")
    for source in inputs:
        given = source.path if isinstance(source, Source) else Path(source)
        if _same_file(target, given):
            raise OutputPathError(f"{path}: is the input {source}; refusing to overwrite an input")
    _check_replaceable(path, target, store=suffix == ".zarr")
    return path


def _final(path: Path) -> Path:
    """Where a write lands: the file a symlink points to, else the path itself."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _check_replaceable(path: Path, target: Path, store: bool) -> None:
    """Refuse to replace something of another kind: only a zarr store (or an empty directory)
    makes way for a store, only a regular file for a file."""
    if not target.exists():
        return
    if store:
        if not target.is_dir():
            raise OutputPathError(f"{path}: is a file, not a zarr store; refusing to replace it")
        if any(target.iterdir()) and not _is_zarr_store(target):
            raise OutputPathError(
                f"{path}: is a directory that is not a zarr store; refusing to replace it"
            )
    elif target.is_dir():
        raise OutputPathError(f"{path}: is a directory; refusing to replace it with a file")
    elif not target.is_file():
        raise OutputPathError(f"{path}: is not a regular file; refusing to replace it")
    elif not os.access(target, os.W_OK):  # a rename would replace it all the same
        raise OutputPathError(f"{path}: is read-only; refusing to replace it")


def _is_zarr_store(path: Path) -> bool:
    """A zarr group (format 2 or 3) at the top of a directory."""
    return any((path / name).is_file() for name in (".zgroup", ".zmetadata", "zarr.json"))


def _sibling(path: Path, tag: str) -> Path:
    """A hidden name next to ``path``, unique to this process (and short enough for any
    file system that takes ``path``)."""
    return path.with_name(f".{path.name[:200]}.{os.getpid()}.{tag}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _discard(path: Path) -> None:
    """Remove a temporary, finishing the job through repeated Ctrl-C."""
    for _ in range(100):
        try:
            _remove(path)
            return
        except KeyboardInterrupt:
            continue


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C back for a few renames and deliver it after: a swap is never left halfway."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
    if caught:
        signal.raise_signal(signal.SIGINT)  # delivered by the restored handler


@contextlib.contextmanager
def _atomic(path: Path, store: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` only when the block
    completes and is removed on any error or Ctrl-C (the previous file is left as it was)."""
    target = _final(path)
    temporary = _sibling(target, "tmp")
    _discard(temporary)  # a leftover of a killed process that had this pid
    try:
        yield temporary
        if store:
            _swap_store(temporary, target)
        else:
            if target.exists():
                shutil.copymode(target, temporary)  # the permissions of the file replaced
            os.replace(temporary, target)
    except BaseException:
        _discard(temporary)
        raise


def _swap_store(new: Path, target: Path) -> None:
    """Put a directory store in place: the old one is renamed aside, the new one renamed in,
    then the old one removed; restored if the second rename fails."""
    if not target.exists():
        os.rename(new, target)
        return
    old = _sibling(target, "old")
    _discard(old)
    try:
        with _sigint_deferred():
            os.rename(target, old)
            try:
                os.rename(new, target)
            except BaseException:
                os.rename(old, target)
                raise
    finally:
        _discard(old)  # gone already where the old store was put back


def write_fit(
    ds: xr.Dataset,
    path: str | Path,
    *,
    netcdf_format: NetcdfFormat = "NETCDF4",
    significant_digits: int | None = None,
) -> Path:
    """Write a fit by suffix: ``.nc``, ``.zarr``, ``.parquet`` or ``.root`` (module docstring).

    The write is atomic (module docstring): an error or Ctrl-C leaves a previous file intact.

    Parameters
    ----------
    ds : the fit Dataset from ``xslide.fit``.
    path : the output file (a ``.zarr`` store is a directory; an existing store is replaced,
        any other directory is refused).
    netcdf_format : ``.nc`` only: 'NETCDF4' (the default, needs netCDF4: ``pip install
        'xslide[io]'``), variables of 1024 values or more zlib-compressed, or
        'NETCDF3_64BIT', uncompressed, with 64-bit integers (counts) stored as int32.
    significant_digits : ``.nc`` with NETCDF4 only: keep this many significant decimal
        digits of the floating-point variables (netCDF quantization, granular bit round) so
        they compress several-fold more; None (the default) writes them exactly.

    Returns
    -------
    The path written.
    """
    path = check_output(path, FIT_SUFFIXES)
    suffix = path.suffix.lower()
    if suffix == ".nc":
        check_netcdf(netcdf_format, significant_digits)
    with _atomic(path, store=suffix == ".zarr") as temporary:
        if suffix == ".nc":
            encoding = netcdf_encoding(ds, netcdf_format, significant_digits)
            _write_netcdf(ds, temporary, netcdf_format, encoding)
        elif suffix == ".zarr":
            _write_zarr(ds, temporary)
        elif suffix == ".parquet":
            require("pyarrow", "writing parquet files")
            _write_parquet(fit_table(ds), temporary)
        else:
            _write_root_table(fit_table(ds), temporary, TREE_NAME, fit_metadata(ds))
    return path


def check_netcdf(netcdf_format: str = "NETCDF4", significant_digits: int | None = None) -> None:
    """Check the netCDF options of ``write_fit`` and that NETCDF4 can be written (netCDF4
    installed), before any work: the error names the ``io`` extra and the NETCDF3 option."""
    if netcdf_format not in NETCDF_FORMATS:
        raise ValueError(
            f"netcdf_format must be one of {list(NETCDF_FORMATS)}, got {netcdf_format!r}"
        )
    if significant_digits is not None:
        if isinstance(significant_digits, bool) or not isinstance(
            significant_digits, int | np.integer
        ):
            raise ValueError(
                f"significant_digits must be None or an integer 1..15, got {significant_digits!r}"
            )
        if not 1 <= significant_digits <= 15:
            raise ValueError(f"significant_digits must be in 1..15, got {significant_digits!r}")
        if netcdf_format != "NETCDF4":
            raise ValueError("significant_digits needs netcdf_format='NETCDF4'")
    if netcdf_format == "NETCDF4":
        require(
            "netCDF4",
            "writing a compressed NETCDF4 file (or ask for an uncompressed NETCDF3 file with "
            "netcdf_format='NETCDF3_64BIT', on the command line --netcdf-format NETCDF3_64BIT)",
        )


def netcdf_encoding(
    ds: xr.Dataset, netcdf_format: str = "NETCDF4", significant_digits: int | None = None
) -> dict[str, dict]:
    """The per-variable netCDF encoding ``write_fit`` uses: NETCDF4 compresses (zlib) the
    numeric variables of ``COMPRESS_MIN_SIZE`` values or more."""
    if netcdf_format != "NETCDF4":
        return {name: {} for name in ds.variables}
    encoding = {}
    for name, variable in ds.variables.items():
        if variable.size < COMPRESS_MIN_SIZE or variable.dtype.kind not in "iufb":
            encoding[name] = {}
            continue
        encoding[name] = {"zlib": True, "complevel": 4, "shuffle": True}
        if significant_digits is not None and variable.dtype.kind == "f":
            encoding[name] |= {
                "significant_digits": int(significant_digits),
                "quantize_mode": "GranularBitRound",
            }
    return encoding


def _write_netcdf(ds: xr.Dataset, path: Path, netcdf_format: str, encoding: dict) -> None:
    """``ds.to_netcdf(path)``, but holding a reentrant lock of its own: a Ctrl-C can skip the
    release of xarray's global netCDF lock, and its closing of the file then waits forever.

    (So the write is not serialized with netCDF reads other threads may do meanwhile.)
    NETCDF4 needs netCDF4 (``check_netcdf``); NETCDF3 is written by scipy when it is missing.
    """
    ds = _without_encoding(ds)  # encodings (even from a file read) would override ours
    if netcdf_format != "NETCDF4":
        try:
            import netCDF4  # noqa: F401
        except ImportError:
            ds.to_netcdf(path, format=netcdf_format, engine="scipy")
            return
    store = xr.backends.NetCDF4DataStore.open(
        str(path), mode="w", format=netcdf_format, lock=threading.RLock()
    )
    try:
        # numpy data: every variable is written here
        ds.compute().dump_to_store(store, encoding=encoding)
    finally:
        store.close()


def _without_encoding(ds: xr.Dataset) -> xr.Dataset:
    """A shallow copy whose variables keep no encoding of a file they were read from."""
    ds = ds.copy(deep=False)
    for variable in ds.variables.values():
        variable.encoding = {}
    return ds


def _write_zarr(ds: xr.Dataset, path: Path) -> None:
    """``ds.to_zarr``; when it fails or is interrupted, first wait for the writes zarr 3 still
    runs in its own thread, which would otherwise recreate the store once it is removed."""
    zarr = require("zarr", "writing zarr stores")
    # zarr 3 has no v3 spec for the string coords target/term: keep the v2 format
    options = {"zarr_format": 2} if int(zarr.__version__.split(".")[0]) >= 3 else {}
    try:
        ds.to_zarr(path, mode="w-", consolidated=True, **options)
    except BaseException:
        _settle_zarr()
        raise


def _settle_zarr(timeout: float = 30.0) -> None:
    """Wait (at most ``timeout`` seconds) for the tasks on zarr 3's event loop to finish."""
    try:
        from zarr.core import sync
    except ImportError:  # zarr 2 writes in the calling thread
        return
    loop = getattr(sync, "loop", [None])[0]
    if loop is None or loop.is_closed() or not loop.is_running():
        return

    async def pending() -> None:
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(pending(), loop).result(timeout + 1)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    pa = require("pyarrow", "writing parquet files")
    pq = require("pyarrow.parquet", "writing parquet files")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if frame.attrs:
        metadata = dict(table.schema.metadata or {})
        metadata[METADATA_KEY.encode()] = json.dumps(frame.attrs).encode()
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path)


def open_fit(path: str | Path) -> xr.Dataset:
    """Open a fit written by ``write_fit`` (``.nc``, ``.zarr``, ``.parquet`` or ``.root``),
    loaded into memory; the tables are rebuilt into the Dataset (``xslide.fit_tables``)."""
    path = Path(path)
    _refuse_pickle(path.name)
    if path.suffix.lower() not in FIT_SUFFIXES:
        raise ValueError(
            f"{path}: a fit is read from {', '.join(FIT_SUFFIXES)}, got {path.suffix or 'none'}"
        )
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".root"):
        from .fit_tables import read_fit_table

        return read_fit_table(path)
    if path.suffix.lower() == ".nc":
        with _reading(Source(path, "netCDF")), xr.open_dataset(path) as ds:
            return ds.load()
    require("zarr", "reading zarr stores")
    with _reading(Source(path, "zarr")), xr.open_zarr(path) as ds:
        return ds.load()


def write_rows(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write rows by suffix: ``.parquet``, ``.csv`` or ``.root`` (a TTree ``rows``), atomically
    (module docstring)."""
    path = check_output(path, ROWS_OUT_SUFFIXES)
    suffix = path.suffix.lower()
    with _atomic(path) as temporary:
        if suffix == ".parquet":
            _write_parquet(frame, temporary)
        elif suffix == ".csv":
            frame.to_csv(temporary, index=False)
        else:
            _write_root_table(frame, temporary, "rows", None)
    return path
