"""The public crop-type datasets' layouts: the Canadian Cropland Dataset (ccd, ccdwrite) and H2Crop's HDF5
(h2crop, h2cropwrite), read into mapper's ParcelDataset so `mapper croptype train|evaluate --format` train
and judge on them as on native datasets, and written from the simulated world (`mapper croptype export`);
and a team's own labelled series as a table (table, tablesplit, tablewrite: `--format table`, `predict`).
A dataset read from a format carries its own splits (split column: train / val / test) and monthly steps
(formats.months)."""

from __future__ import annotations

from pathlib import Path

from mapper.croptype.dataset import DatasetError, ParcelDataset
from mapper.croptype.taxonomy import Taxonomy, packaged_taxonomy, read_class_list, read_taxonomy

FORMATS = ("native", "ccd", "h2crop", "table")


def load_taxonomy(path: Path | str | None) -> tuple[Taxonomy, list[dict[str, int]] | None]:
    """A taxonomy CSV: mapper's own columns, H2Crop's cascade_labels.csv (then also its level ids) or a flat
    class list (`label`, optional `cropped`); None: the packaged one."""
    if path is None:
        return packaged_taxonomy(), None
    path = Path(path)
    header = path.read_text(encoding="utf-8").splitlines()[:1] if path.is_file() else []
    if header and "level4_id" in header[0]:
        from mapper.croptype.formats.h2crop import cascade_taxonomy

        return cascade_taxonomy(path)
    columns = [c.strip() for c in header[0].split(",")] if header else []
    if "label" in columns and "level4" not in columns:
        return read_class_list(path), None  # a flat class list (label, optional cropped)
    return read_taxonomy(path), None


def read_format(directory: Path | str, fmt: str, taxonomy: Taxonomy, ids=None, **options) -> ParcelDataset:
    """A dataset directory in `fmt` (native: mapper's own). options go to the reader (ccd: source, types,
    centre; h2crop: unit, max_pixels, seed; table: formats.table.TableSpec's fields, labelled, expect)."""
    if fmt == "native":
        from mapper.croptype.dataset import load_dataset

        return load_dataset(directory)
    if fmt == "ccd":
        from mapper.croptype.formats.ccd import read_ccd

        return read_ccd(directory, taxonomy, **options)
    if fmt == "h2crop":
        from mapper.croptype.formats.h2crop import read_h2crop

        return read_h2crop(directory, taxonomy, ids=ids, **options)
    if fmt == "table":
        from mapper.croptype.formats.table import read_table

        return read_table(directory, taxonomy, **options)
    raise DatasetError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
