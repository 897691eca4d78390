"""Every code block of README.md and docs/*.md runs as written.

How the documents are run (the conventions a doc writer follows):

- Each Markdown file runs top to bottom in a fresh temporary directory, its working directory,
  as a reader following it in one shell and one Python session would: files written by a block
  (``xslide demo --write-rows rows.parquet``, ``fit.to_netcdf("map.nc")``) are there for the
  blocks after it.
- A ```` ```python ```` block runs in a fresh namespace: it is self-contained (its imports, its
  data).
- A Python block preceded by the line ``<!-- continues -->`` (the last non-blank line before its
  opening fence) is chained: it runs in the namespace of the previous Python block of the same
  file, so it may use the names that block (and the blocks it continues) defined. The comment
  does not render, so the reader sees a plain block after the prose that says where its data
  come from.
- A ```` ```bash ```` block whose every command starts with ``xslide`` is a command-line
  example: each command (``\\`` continuations joined, ``#`` comments dropped, split as a shell
  would with ``shlex``) runs through ``xslide.cli.main`` and must exit with 0. Other bash blocks
  (installation, ``pytest``) are not run; a bash block mixing both is refused.
- Every other fence (```` ```text ````, no language) is prose and is not run.
- The fast test runs ``xslide demo --rows N`` with at most ``FAST_DEMO_ROWS`` rows (the demo's
  fit dominates the time); the ``slow`` test runs every block exactly as written.
- A block must run clean: a warning raised in xslide or attributed to the block (a
  ``PerformanceWarning``, a periodic dim without ``extent``, ...) fails it, and so does an
  ``xslide: warning:`` line of a command. Warnings of other libraries are let through.
- matplotlib draws with the Agg backend; figures are closed after each file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

# The examples run at their documented sizes: numba's kernels, not their Python fallback.
needs_numba = pytest.mark.needs_numba

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
CONTINUES = "<!-- continues -->"
FAST_DEMO_ROWS = "20000"
_FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language, its text, its first line and whether it is chained."""

    language: str
    code: str
    line: int
    continues: bool


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, in order."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        before = [line.strip() for line in lines[:i] if line.strip()]
        start, i = i, i + 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: a code block is never closed")
        code = "\n".join(lines[start + 1 : i]) + "\n"
        chained = bool(before) and before[-1] == CONTINUES
        found.append(Block(match.group(1).lower(), code, start + 1, chained))
        i += 1
    return found


def commands(code: str) -> list[list[str]]:
    """The commands of a bash block as argument lists: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", code)
    return [argv for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]


def is_cli_example(block: Block) -> bool:
    """A bash block of ``xslide`` commands (refused when it mixes them with other commands)."""
    if block.language not in ("bash", "sh", "console", "shell"):
        return False
    names = {argv[0] for argv in commands(block.code)}
    if "xslide" in names and names != {"xslide"}:
        raise ValueError(f"line {block.line}: a bash block mixes xslide commands with {names}")
    return names == {"xslide"}


def _shrink_demo(argv: list[str]) -> list[str]:
    """``xslide demo --rows N`` with at most FAST_DEMO_ROWS rows."""
    if argv[:2] != ["xslide", "demo"] or "--rows" not in argv:
        return argv
    at = argv.index("--rows") + 1
    if float(argv[at]) > float(FAST_DEMO_ROWS):
        return [*argv[:at], FAST_DEMO_ROWS, *argv[at + 1 :]]
    return argv


def run_cli_block(block: Block, where: str, fast: bool, capsys) -> None:
    from xslide.cli import main

    for argv in commands(block.code):
        argv = _shrink_demo(argv) if fast else argv
        code = main(argv[1:])
        err = capsys.readouterr().err
        assert code == 0, f"{where}: `{shlex.join(argv)}` exited {code}: {err}"
        assert "xslide: warning:" not in err, f"{where}: `{shlex.join(argv)}` warned: {err}"


def run_python_block(block: Block, where: str, namespace: dict) -> None:
    """Run a Python block in ``namespace``; its errors and xslide's warnings fail it."""
    package = str(ROOT / "xslide")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            exec(compile(block.code, where, "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"{where} raised {type(err).__name__}: {err}") from err
    own = [w for w in caught if w.filename == where or w.filename.startswith(package)]
    assert not own, f"{where} warned: " + "; ".join(
        f"{w.category.__name__}: {w.message}" for w in own
    )


def run_document(path: Path, fast: bool, capsys) -> int:
    """Run every block of one document (in the current directory); return how many ran."""
    name = path.name if path.parent == ROOT else f"{path.parent.name}/{path.name}"
    found = blocks(path.read_text(encoding="utf-8"))
    namespace: dict | None = None
    ran = 0
    for block in found:
        where = f"{name}, block at line {block.line}"
        if block.language == "python":
            if block.continues:
                assert namespace is not None, f"{where}: continues, but no Python block precedes"
            else:
                namespace = {"__name__": "__docs__"}
            run_python_block(block, where, namespace)
            ran += 1
        elif is_cli_example(block):
            run_cli_block(block, where, fast, capsys)
            ran += 1
        else:
            assert not block.continues, f"{where}: only Python blocks continue"
    return ran


@contextlib.contextmanager
def _inside(path: Path):
    """Run in ``path`` with the Agg backend; close the figures afterwards."""
    old = Path.cwd()
    os.chdir(path)
    plt = None
    with contextlib.suppress(ImportError):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    try:
        yield
    finally:
        os.chdir(old)
        if plt is not None:
            plt.close("all")


@pytest.mark.parametrize("name", DOCS)
def test_links_point_at_files_of_the_repository(name):
    """Relative links resolve inside the repository; nothing points at the design notes,
    which users do not have."""
    path = ROOT / name
    text = path.read_text(encoding="utf-8")
    assert "../shared" not in text and "API.md" not in text
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.exists() and ROOT in resolved.parents, f"{name}: broken link {target}"


def test_every_markdown_file_is_run():
    assert "README.md" in DOCS and "docs/contract.md" in DOCS and "docs/o2dpg.md" in DOCS


@needs_numba
@pytest.mark.parametrize("name", DOCS)
def test_every_code_block_runs(name, tmp_path, capsys):
    with _inside(tmp_path):
        ran = run_document(ROOT / name, fast=True, capsys=capsys)
    assert ran > 0, f"{name}: no code block ran"


@pytest.mark.slow
@needs_numba
@pytest.mark.parametrize("name", DOCS)
def test_every_code_block_runs_exactly_as_written(name, tmp_path, capsys):
    with _inside(tmp_path):
        run_document(ROOT / name, fast=False, capsys=capsys)


# ---- the runner itself ----

SAMPLE = """\
Prose.

```python
x = 1
```

<!-- continues -->

```python
y = x + 1
```

```bash
pip install xslide
```

```bash
xslide demo --rows 1e5 \\
    --write-rows rows.parquet  # sample rows
xslide fit rows.parquet --selection 'abs(qpt) < 2' --out fit.nc
```
"""


def test_blocks_are_found_with_their_language_line_and_chaining():
    found = blocks(SAMPLE)
    assert [(b.language, b.line, b.continues) for b in found] == [
        ("python", 3, False),
        ("python", 9, True),
        ("bash", 13, False),
        ("bash", 17, False),
    ]
    assert [is_cli_example(b) for b in found] == [False, False, False, True]
    assert commands(found[3].code) == [
        ["xslide", "demo", "--rows", "1e5", "--write-rows", "rows.parquet"],
        ["xslide", "fit", "rows.parquet", "--selection", "abs(qpt) < 2", "--out", "fit.nc"],
    ]
    assert _shrink_demo(commands(found[3].code)[0])[3] == FAST_DEMO_ROWS


def test_a_chained_block_sees_the_names_of_the_previous_one_and_a_fresh_one_does_not(
    tmp_path, capsys
):
    doc = tmp_path / "doc.md"
    doc.write_text("```python\nx = 1\n```\n\n<!-- continues -->\n```python\nassert x == 1\n```\n")
    assert run_document(doc, fast=True, capsys=capsys) == 2
    doc.write_text("```python\nx = 1\n```\n\n```python\nprint(x)\n```\n")
    with pytest.raises(AssertionError, match="line 5 raised NameError"):
        run_document(doc, fast=True, capsys=capsys)


def test_a_block_that_warns_fails(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```python\nimport pandas as pd, xslide\n"
        "df = pd.DataFrame({'a': [0, 1, 3] * 10, 'y': range(30)})\n"
        "xslide.fit(df, ['a'], ['y'], window={'a': 1}, boundary='periodic')\n```\n"
    )
    with pytest.raises(AssertionError, match="line 1 warned: UserWarning: boundary 'periodic'"):
        run_document(doc, fast=True, capsys=capsys)


def test_a_bash_block_mixing_xslide_with_other_commands_is_refused():
    (block,) = blocks("```bash\npip install xslide\nxslide demo\n```\n")
    with pytest.raises(ValueError, match="mixes xslide commands"):
        is_cli_example(block)


# ---- the rows the examples read: xslide demo --write-rows ----


@pytest.mark.slow
@needs_numba
def test_demo_writes_its_rows_with_their_bin_columns_in_every_format(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    uproot = pytest.importorskip("uproot")
    import numpy as np
    import pandas as pd

    from xslide.cli import main

    paths = [tmp_path / f"rows.{suffix}" for suffix in ("parquet", "csv", "root")]
    argv = ["demo", "--rows", "2e4", "--out", str(tmp_path / "demo")]
    assert main([*argv, *[a for p in paths for a in ("--write-rows", str(p))]]) == 0
    assert f"writing the rows to {paths[0]}..." in capsys.readouterr().out
    parquet = pd.read_parquet(paths[0])
    csv = pd.read_csv(paths[1])
    with uproot.open(paths[2]) as file:
        root = file["rows"].arrays(library="pd")
    columns = ["r", "y2x", "z2x", "sector", "qpt", "dX", "dY", "dZ", "rBin", "y2xBin", "z2xBin"]
    for table in (parquet, csv, root):
        assert list(table.columns) == columns and len(table) == 20_000
        assert table.rBin.dtype == np.int64 and table.sector.dtype == np.int64
    # the bin columns are those of the demo's binning: 32 bins of 5 cm in r from 85 cm
    np.testing.assert_array_equal(parquet.rBin, np.floor((parquet.r - 85.0) / 5.0))
    np.testing.assert_allclose(csv.dX, parquet.dX, rtol=1e-15)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("rows.txt", "expected a suffix among .parquet, .csv, .root"),
        ("missing/rows.parquet", "does not exist"),
    ],
)
def test_demo_refuses_a_rows_file_it_cannot_write_before_fitting(tmp_path, capsys, path, why):
    from xslide.cli import main

    code = main(["demo", "--rows", "1e3", "--out", str(tmp_path / "d"), "--write-rows",
                 str(tmp_path / path)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("xslide: error: ") and len(err.splitlines()) == 1
    assert why in err
    assert not (tmp_path / "d.nc").exists()  # refused before the fit
