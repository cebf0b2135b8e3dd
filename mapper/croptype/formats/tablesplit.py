"""Training splits of a table (mapper.croptype.formats.table): the table's own split column, or a seeded share of
each class's ids held out for early stopping — per class, so every class keeps training samples, and by id,
so the rows of one sample never sit on both sides."""

from __future__ import annotations

import numpy as np

from mapper.croptype.dataset import DatasetError, ParcelDataset
from mapper.croptype.taxonomy import Taxonomy


def assign_split(ds: ParcelDataset, val_share: float, seed: int) -> ParcelDataset:
    """The dataset with a split column: its own when it has one, else per class round(val_share × its ids)
    ids drawn (seeded) as "val" — at most all but one, so a class of one id trains — and the rest "train"."""
    if "split" in ds.parcels:
        return ds
    if not 0 < val_share < 1:
        raise DatasetError(f"val_share {val_share}: hold out a share between 0 and 1 of the ids")
    ids = ds.parcels["id"].astype(str).to_numpy()
    first = ds.parcels.drop_duplicates("id")  # an id's class is its first row's
    rng = np.random.default_rng(seed)
    val: set[str] = set()
    for code in sorted(first["code"].unique()):
        members = np.sort(first.loc[first["code"] == code, "id"].astype(str).to_numpy())
        n_val = min(round(val_share * len(members)), len(members) - 1)
        val.update(rng.permutation(members)[:n_val].tolist())
    parcels = ds.parcels.assign(split=np.where(np.isin(ids, list(val)), "val", "train"))
    meta = {**ds.meta, "split": {"how": "seeded per-class share of the ids", "val_share": val_share, "seed": seed}}
    return ParcelDataset(ds.series, parcels, ds.bands, ds.steps, meta)


def check_split_classes(ds: ParcelDataset, taxonomy: Taxonomy) -> None:
    """Every class with validation or test rows needs training rows: else it could never be predicted, and
    the split column (or too small a table) is the thing to fix. The error lists each such class's rows."""
    split, codes = ds.parcels["split"].to_numpy(), ds.parcels["code"].to_numpy()
    trained = set(codes[split == "train"].tolist())
    names = dict(zip(taxonomy.codes, taxonomy.leaf_names(), strict=True))
    empty = sorted(set(codes.tolist()) - trained)
    if empty:
        listed = "; ".join(f"{names[c]!r} ({_counts(split[codes == c])})" for c in empty[:12])
        raise DatasetError(f"class(es) with no training row after the split: {listed}; put some of their samples in "
                           "the train split (split column) or drop the class")  # fmt: skip


def _counts(splits: np.ndarray) -> str:
    return ", ".join(f"{int((splits == s).sum())} {s} rows" for s in ("val", "test") if (splits == s).any())
