"""Labelled blocks: imagery + cropland mask + coverage type, from the simulated world or from people.

The on-disk form and its checks are in `mapper.labels.store`; labels from the world's truth in
`mapper.labels.world`."""

from mapper.labels.store import (
    CROPLAND,
    IGNORE,
    NOT_CROPLAND,
    LabelError,
    LabelledBlock,
    ingest_polygons,
    read_labelled_block,
    write_labelled_block,
)

__all__ = [
    "CROPLAND",
    "IGNORE",
    "NOT_CROPLAND",
    "LabelError",
    "LabelledBlock",
    "ingest_polygons",
    "read_labelled_block",
    "write_labelled_block",
]
