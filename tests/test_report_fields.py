"""The report's "Fields over imagery" figure: a block's imagery at full resolution where its cropland is densest,
with the field polygons drawn on its own grid; in the report only when the run has fields (a small synthetic run
directory, no validation)."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from PIL import Image

from mapper.fields.polygons import to_lonlat
from mapper.grid.tilegrid import PixelWindow

WINDOW = PixelWindow(16, 13715374, 7294316, 13715374 + 800, 7294316 + 700)
FIELD = (300, 150, 500, 400)  # rows 300-499, cols 150-399 of the window: the one field, all the cropland


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = data if data.ndim == 3 else data[None]
    with rasterio.open(path, "w", driver="GTiff", width=WINDOW.width, height=WINDOW.height, count=data.shape[0],
                       dtype=data.dtype, crs="EPSG:3857", transform=WINDOW.transform) as dst:  # fmt: skip
        dst.write(data)


def _run(root, blocks=("5886_2256",), with_fields=True):
    r0, c0, r1, c1 = FIELD
    for block in blocks:
        final = np.zeros(WINDOW.shape, np.uint8)
        final[r0:r1, c0:c1] = 1
        _write(root / "final" / f"{block}.tif", final)
        for k, source in enumerate(("demo-a", "demo-b")):
            _write(root / "mosaics" / source / f"{block}.tif", np.full((3, *WINDOW.shape), 60 + 60 * k, np.uint8))
        if with_fields:
            _write(root / "fields" / "blocks" / f"{block}.tif", final.astype(np.uint32))
    if with_fields:
        box = shapely.box(WINDOW.col0 + c0, WINDOW.row0 + r0, WINDOW.col0 + c1, WINDOW.row0 + r1)
        gpd.GeoDataFrame({"id": ["f1"]}, geometry=to_lonlat(np.array([box])), crs=4326).to_parquet(
            root / "fields" / "fields.parquet")  # fmt: skip
        (root / "fields" / "summary.json").write_text(json.dumps({"fields": 1, "area_ha": 2.6, "model": "baseline"}))
        (root / "fields" / "evaluation.json").write_text(json.dumps({"precision": 0.5, "recall": 0.25, "f1": 0.333,
                                                                     "extent_iou": 0.9}))  # fmt: skip
    return root


def test_the_fields_are_drawn_where_they_lie_at_full_resolution(tmp_path):
    from mapper.validation.report_figures import densest_window, fields_over_imagery_png

    root = _run(tmp_path)
    final = root / "final" / "5886_2256.tif"
    r0, c0 = densest_window(rasterio.open(final).read(1) == 1, 600)
    fields = gpd.read_parquet(root / "fields" / "fields.parquet")
    png = fields_over_imagery_png(root / "mosaics" / "demo-a" / "5886_2256.tif", final, fields, tmp_path / "f.png")
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    head = img.shape[0] - 600
    assert img.shape[1] == 600 and 30 <= head <= 60  # one image pixel per output pixel, a title line above
    yellow = (img[..., 0] > 180) & (img[..., 1] > 180) & (img[..., 2] < 140)
    top, left, bottom, right = FIELD[0] - r0 + head, FIELD[1] - c0, FIELD[2] - r0 + head, FIELD[3] - c0
    mid_r, mid_c = (top + bottom) // 2, (left + right) // 2
    for r, c in ((top, mid_c), (bottom, mid_c), (mid_r, left), (mid_r, right)):  # the field's four edges
        assert yellow[r - 1 : r + 1, c - 1 : c + 1].any(), (r, c)
    assert not yellow[mid_r - 50 : mid_r + 50, mid_c - 50 : mid_c + 50].any()  # inside: the imagery only
    assert abs(img[head + 5, 5] - 60).max() <= 2  # the imagery itself, demo-a's


def _figures(run_dir, monkeypatch, table=None):
    from mapper.validation import report

    monkeypatch.setattr(report, "_block_table", lambda run: (table, "no block table"))
    monkeypatch.setattr(report, "_region_and_sources", lambda run: (None, ["demo-a", "demo-b"]))
    return report._figures(run_dir, {}, run_dir)


def test_the_report_has_the_fields_figure_when_the_run_has_fields(tmp_path, monkeypatch):
    from mapper.validation import report

    drawn = []
    real = report.fields_over_imagery_png
    monkeypatch.setattr(report, "fields_over_imagery_png", lambda mosaic, *a, **k: drawn.append(mosaic) or real(
        mosaic, *a, **k))  # fmt: skip
    table = pd.DataFrame({"block_id": ["5886_2256", "5887_2256"], "cropland_m2": [1.0, 2.0],
                          "decision": ["Only A", "Only B"]})  # fmt: skip
    figs = {f.title: f for f in _figures(_run(tmp_path / "with", ("5886_2256", "5887_2256")), monkeypatch, table)}
    fig = figs["Fields over imagery"]
    assert fig.png is not None and fig.problem is None
    assert drawn[-1].parts[-2:] == ("demo-b", "5887_2256.tif")  # the most cropland, on the imagery it was drawn on
    assert "1 fields, 2.6 ha (model baseline)" in fig.caption and "F1 0.333" in fig.caption
    assert "Fields over imagery" not in {f.title for f in _figures(_run(tmp_path / "without", with_fields=False),
                                                                   monkeypatch)}  # fmt: skip


@pytest.mark.parametrize("size", [600, 1000])
def test_the_densest_window_is_found_and_clipped_to_the_block(size):
    from mapper.validation.report_figures import densest_window

    mask = np.zeros((700, 800), bool)
    mask[650:, 700:] = True
    r, c = densest_window(mask, size)
    assert (r, c) == ((100, 200) if size == 600 else (0, 0))
