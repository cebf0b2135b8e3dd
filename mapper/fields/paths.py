"""Where a run keeps its fields (RUN/fields/), and the crop-type stage its crops per field piece.

    fields/blocks/<block>.tif        uint32 piece labels on the block's z16 grid (the final mask's), 0 = no field;
                                     label i + 1 is the block's piece i (polygons.block_fields numbering)
    fields/blocks/<block>.parquet    the block's pieces: geometry in global z16 pixels, first pixel, label
    fields/fields.parquet            the stitched fields (fiboa 0.3 GeoParquet), fields/<prefecture>.gpkg
    croptype/fields/<block>.parquet  crops of a block's pieces (label, crop_code, crop, crop_prob, area_m2),
                                     written by the crop-type stage with croptype.unit = field
"""

from __future__ import annotations

from pathlib import Path


def fields_dir(root: Path | str) -> Path:
    return Path(root) / "fields"


def block_labels_path(root: Path | str, block_id: str) -> Path:
    return fields_dir(root) / "blocks" / f"{block_id}.tif"


def block_pieces_path(root: Path | str, block_id: str) -> Path:
    return fields_dir(root) / "blocks" / f"{block_id}.parquet"


def field_crops_path(root: Path | str, block_id: str) -> Path:
    return Path(root) / "croptype" / "fields" / f"{block_id}.parquet"
