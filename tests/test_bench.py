"""The benchmark's figures that the README quotes."""

from __future__ import annotations

import json

from xslide import bench


def test_bench_reports_predict_rows_per_second(capsys, tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["small", "--scale", "0.05", "--repeat", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "predict at the rows      nearest " in printed and " M rows/s, linear " in printed
    (figures,) = json.loads(out.read_text())
    assert figures["predict_nearest_rows_per_s"] > 0
    assert figures["predict_linear_rows_per_s"] > 0
