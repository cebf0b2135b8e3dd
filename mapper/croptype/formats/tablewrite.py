"""`mapper croptype predict --format table`: the table written back with each sample's prediction — the
predicted class (leaf name), its level path ("cereals / wheat / winter wheat", repeated names joined once: a
flat class list gives the class alone) and the path's probability among the valid paths. A long table gets
its sample's prediction on every row of the sample. Columns of an earlier prediction are replaced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mapper.croptype.dataset import DatasetError, ParcelDataset
from mapper.croptype.formats.table import read_table_file
from mapper.croptype.taxonomy import Taxonomy

COLUMNS = ("predicted_class", "predicted_path", "predicted_probability")


def level_path(taxonomy: Taxonomy, leaf: int) -> str:
    names = [taxonomy.names[lv][taxonomy.paths[leaf, lv]] for lv in range(taxonomy.paths.shape[1])]
    return " / ".join(n for i, n in enumerate(names) if i == 0 or n != names[i - 1])


def prediction_frame(ds: ParcelDataset, pred: dict, taxonomy: Taxonomy) -> pd.DataFrame:
    """One row per sample: id and the three prediction columns."""
    leaf = np.asarray(pred["leaf"], np.int64)
    return pd.DataFrame({
        "id": ds.parcels["id"].to_numpy(),
        "predicted_class": [taxonomy.leaf_names()[i] for i in leaf],
        "predicted_path": [level_path(taxonomy, int(i)) for i in leaf],
        "predicted_probability": np.round(np.asarray(pred["leaf_prob"], np.float64), 4),
    })  # fmt: skip


def write_predictions(table: Path | str, ds: ParcelDataset, pred: dict, taxonomy: Taxonomy, out: Path | str) -> Path:
    """The table at `table` (as read into `ds`) with the prediction columns, written atomically to `out` (.csv or
    .parquet, by its suffix)."""
    from mapper.store.atomic import atomic_path

    out = Path(out)
    if not out.name.lower().endswith((".csv", ".parquet")):
        raise DatasetError(f"--out {out}: write the predictions to a .csv or .parquet file")
    df = read_table_file(table).drop(columns=list(COLUMNS), errors="ignore")
    per_sample = prediction_frame(ds, pred, taxonomy)
    if ds.meta["source"]["layout"] == "wide":
        rows = ds.parcels["row"].to_numpy()
        for c in COLUMNS:
            df.loc[rows, c] = per_sample[c].to_numpy()
    else:
        key = ds.meta["source"].get("id_column", "id")
        df = df.merge(per_sample.rename(columns={"id": "__id"}), left_on=df[key].astype(str), right_on="__id",
                      how="left").drop(columns=["__id", "key_0"], errors="ignore")  # fmt: skip
    with atomic_path(out) as tmp:
        if out.name.lower().endswith(".csv"):
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return out
