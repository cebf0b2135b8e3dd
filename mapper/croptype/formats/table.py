"""Labelled series as a table (CSV or Parquet) — a field survey joined to a time-series export — read into a
ParcelDataset for `mapper croptype train|evaluate|predict --format table`.

Layouts (detected from the columns):
- wide: one row per sample, a label column and `<BAND>_<step>` series columns (NDVI_00 … NDVI_45, or
  B02_00 … B12_45): the band is the name before the last underscore, the step an integer or a date
  (YYYY-MM-DD or YYYYMMDD). An `id` column is optional (default: the row number).
- long: one row per sample and date, an id column, a `date` or `step` column and one column per band.
Whatever bands the table holds (NDVI alone is common); every band needs every step. Integer steps are
step × step_days days (default 5, mapper's own spacing: the time augmentations shift in days), dates are days
from 1 January of the earliest year. Missing values — empty cells, and in a long table the dates a sample
lacks — are filled as the compositor fills cloudy steps (composite.interpolate_gaps: linear in time, the nearest
value before the first and after the last observation). Labels are leaf names of the taxonomy (any case) or
its codes. A split column (train / val / test) gives the splits; without one, training holds out a seeded,
per-class share of the ids (assign_split). Every bad input is a DatasetError that names the column and the rows
(CSV: line numbers, the header being line 1; Parquet: row numbers from 1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mapper.croptype.composite import interpolate_gaps
from mapper.croptype.dataset import DatasetError, ParcelDataset
from mapper.croptype.taxonomy import Taxonomy

SERIES_COLUMN = re.compile(r"^(?P<band>.+)_(?P<step>\d{4}-\d{2}-\d{2}|\d+)$")
DATE = re.compile(r"^\d{4}-?\d{2}-?\d{2}$")
SPLITS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
SHOWN = 8  # rows or values named in an error before "…"


@dataclass(frozen=True)
class TableSpec:
    """How to read a table: the CLI's --label-column, --id-column, --time-column, --split-column, --bands and
    --step-days."""

    label_column: str = "label"
    id_column: str = "id"
    time_column: str | None = None  # long tables: None looks for `date`, then `step`
    split_column: str = "split"
    bands: tuple[str, ...] | None = None  # None: every band the table holds
    step_days: float = 5.0


@dataclass
class _Series:
    """A table's series before gap filling: (N, B, T) values with NaN gaps, one row of `frame` per sample."""

    values: np.ndarray
    bands: tuple[str, ...]
    tokens: list[str]  # each step as the table writes it
    days: np.ndarray
    frame: pd.DataFrame  # one row per sample: id, label, split (when present), row (position in the table)
    layout: str


def read_table_file(path: Path | str) -> pd.DataFrame:
    """The table at `path` (.csv, .csv.gz, .parquet, .pq), columns as the file names them."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} is not a file; --format table reads one CSV or Parquet table per --data")
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        df = pd.read_parquet(path)
    elif name.endswith((".csv", ".csv.gz", ".txt")):
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])  # values checked below
    else:
        raise DatasetError(f"{path}: a table is a .csv or .parquet file; convert it or rename it")
    df.columns = [str(c).strip() for c in df.columns]
    df.attrs["csv"] = not name.endswith((".parquet", ".pq"))
    return df.reset_index(drop=True)


def where(df: pd.DataFrame, positions) -> str:
    """Rows at `positions` (0-based) as the user finds them: CSV lines (header = line 1) or row numbers."""
    positions = np.asarray(positions, np.int64)
    first = 2 if df.attrs.get("csv") else 1
    shown = ", ".join(str(p + first) for p in positions[:SHOWN])
    more = f" … ({len(positions)} in all)" if len(positions) > SHOWN else ""
    return f"{'lines' if df.attrs.get('csv') else 'rows'} {shown}{more}"


def _numbers(df: pd.DataFrame, column: str) -> np.ndarray:
    """The column as float64, NaN where empty; non-numeric or infinite values are an error naming the rows."""
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero((np.isnan(values) & raw.notna().to_numpy()) | np.isinf(values))
    if len(bad):
        example = raw.iloc[bad[0]]
        raise DatasetError(f"column {column} holds non-numeric values ({example!r} …) on {where(df, bad)}; series "
                           "values must be numbers (leave a missing value empty)")  # fmt: skip
    return values


def _days(tokens: Sequence[str], step_days: float, what: str) -> np.ndarray:
    """Days of each step: integers × step_days, or dates counted from 1 January of the earliest year."""
    tokens = [str(t) for t in tokens]
    if all(DATE.match(t) and len(t) in (8, 10) for t in tokens):
        dates = pd.to_datetime(pd.Series(tokens).str.replace("-", ""), format="%Y%m%d", errors="coerce")
        if dates.isna().any():
            raise DatasetError(f"{what}: {tokens[int(np.flatnonzero(dates.isna())[0])]!r} is not a date (YYYY-MM-DD)")
        start = pd.Timestamp(year=int(dates.dt.year.min()), month=1, day=1)
        return ((dates - start).dt.days + 1).to_numpy(np.float64)
    try:
        return np.round(np.array([int(t) for t in tokens], np.float64) * float(step_days))  # whole days
    except ValueError:
        raise DatasetError(f"{what}: steps are all integers or all dates (YYYY-MM-DD); got {tokens[:SHOWN]}") from None


def series_columns(columns: Sequence[str]) -> dict[str, dict[str, str]]:
    """{band: {step token: column}} of the `<BAND>_<step>` columns."""
    out: dict[str, dict[str, str]] = {}
    for c in columns:
        m = SERIES_COLUMN.match(c)
        if m:
            out.setdefault(m["band"], {})[m["step"]] = c
    return out


def _pick_bands(have: Sequence[str], want: Sequence[str] | None, hint: str, model=None) -> tuple[str, ...]:
    """--bands when given (each must be there); else a model's bands the table has (check_model_input names the
    others); else every band."""
    if want is None:
        common = [b for b in (model or ()) if b in have]
        return tuple(common or have)
    missing = [b for b in want if b not in have]
    if missing:
        raise DatasetError(f"band(s) {', '.join(missing)} not in the table: it has {hint}; name bands it holds "
                           "with --bands, or leave --bands out for all of them")  # fmt: skip
    return tuple(want)


def _wide(df: pd.DataFrame, spec: TableSpec, found: dict[str, dict[str, str]], model=None) -> _Series:
    hint = f"series columns of {', '.join(found)}"
    bands = _pick_bands(list(found), spec.bands, hint, model)
    for c in df.columns:  # `NDVI_5a` beside NDVI_00 …: a series column the reader cannot place
        band = c.rpartition("_")[0]
        if band in bands and not SERIES_COLUMN.match(c):
            raise DatasetError(f"column {c}: after band {band} a step number or date is expected ({band}_00 or "
                               f"{band}_2006-05-01); rename it or drop it")  # fmt: skip
    tokens = sorted({t for b in bands for t in found[b]}, key=lambda t: (len(t), t))
    days = _days(tokens, spec.step_days, "series columns")
    order = np.argsort(days, kind="stable")
    tokens, days = [tokens[i] for i in order], days[order]
    gaps = [f"{b}_{t}" for b in bands for t in tokens if t not in found[b]]
    if gaps:
        raise DatasetError(
            f"missing series column(s) {', '.join(gaps[:SHOWN])}{' …' if len(gaps) > SHOWN else ''}: "
            "every band needs every step other bands have (leave unknown values empty instead)"
        )
    if len(set(days)) != len(days):
        raise DatasetError(f"series columns name the same step twice ({', '.join(tokens)}); one column a step")
    values = np.stack([np.stack([_numbers(df, found[b][t]) for t in tokens], axis=1) for b in bands], axis=1)
    ids = df[spec.id_column].astype(str) if spec.id_column in df else pd.Series(np.arange(len(df)).astype(str))
    frame = pd.DataFrame({"id": ids.to_numpy(), "row": np.arange(len(df))})
    return _Series(values, bands, tokens, days, _with_columns(frame, df, spec, df.index), "wide")


def _time_column(df: pd.DataFrame, spec: TableSpec) -> str:
    if spec.time_column:
        if spec.time_column not in df:
            raise DatasetError(f"--time-column {spec.time_column}: the table has no such column "
                               f"(columns: {', '.join(df.columns)})")  # fmt: skip
        return spec.time_column
    found = next((c for c in ("date", "step") if c in df), None)
    if found is None:
        raise DatasetError(
            f"no series in the table (columns: {', '.join(df.columns[:12])}{' …' if len(df.columns) > 12 else ''}): "
            "a wide table has <BAND>_<step> columns (NDVI_00 … NDVI_45), a long one an id column, a `date` or "
            "`step` column (--time-column) and a column per band"
        )
    return found


def _stamps(column: pd.Series) -> pd.Series:
    """A long table's step or date column as text: Parquet datetimes as YYYY-MM-DD, whole floats as integers."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return column.dt.strftime("%Y-%m-%d").fillna("")
    if pd.api.types.is_float_dtype(column) and np.allclose(column.dropna() % 1, 0):
        return column.astype("Int64").astype(str).replace("<NA>", "")
    return column.astype(str).str.strip()


def _long(df: pd.DataFrame, spec: TableSpec, model=None) -> _Series:
    time = _time_column(df, spec)
    if spec.id_column not in df:
        raise DatasetError(f"a long table (one row per sample and {time}) needs an id column to tell its samples "
                           f"apart; it has no column {spec.id_column!r} (--id-column)")  # fmt: skip
    keys = {spec.id_column, time, spec.label_column, spec.split_column}
    others = [c for c in df.columns if c not in keys]
    bands = _pick_bands(others, spec.bands, "band columns " + ", ".join(others), model)
    if not bands:
        raise DatasetError(f"the long table has no band column beside {', '.join(sorted(keys & set(df.columns)))}")
    stamp = _stamps(df[time])
    empty = np.flatnonzero(df[time].isna().to_numpy() | (stamp == "").to_numpy())
    if len(empty):
        raise DatasetError(f"column {time} is empty on {where(df, empty)}; every row of a long table needs its step")
    tokens = sorted(stamp.unique(), key=lambda t: (len(t), t))
    days = _days(tokens, spec.step_days, f"column {time}")
    order = np.argsort(days, kind="stable")
    tokens, days = [tokens[i] for i in order], days[order]
    ids = df[spec.id_column].astype(str)
    twice = df.duplicated([spec.id_column, time], keep=False).to_numpy()
    if twice.any():
        raise DatasetError(f"id and {time} repeat on {where(df, np.flatnonzero(twice))}; a long table has one row per "
                           "sample and step")  # fmt: skip
    uid, sample = np.unique(ids.to_numpy(), return_inverse=True)
    first = pd.Series(np.arange(len(df))).groupby(sample).min().to_numpy()
    keep = np.argsort(first, kind="stable")  # samples in the table's order
    rank = np.empty_like(keep)
    rank[keep] = np.arange(len(keep))
    step = stamp.map(dict(zip(tokens, range(len(tokens)), strict=True))).to_numpy(np.int64)
    values = np.full((len(uid), len(bands), len(tokens)), np.nan)
    for b, band in enumerate(bands):
        values[rank[sample], b, step] = _numbers(df, band)
    frame = pd.DataFrame({"id": uid[keep], "row": first[keep]})
    frame = _with_columns(frame, df, spec, first[keep], per_id=(sample, rank))
    return _Series(values, bands, tokens, days, frame, "long")


def _with_columns(frame: pd.DataFrame, df: pd.DataFrame, spec: TableSpec, rows, per_id=None) -> pd.DataFrame:
    """Add the label and split of each sample; in a long table they must agree over a sample's rows."""
    for column, name in ((spec.label_column, "label"), (spec.split_column, "split")):
        if column not in df:
            continue
        text = df[column].astype("string").str.strip()
        if per_id is not None:
            sample, rank = per_id
            n = pd.Series(text.to_numpy()).groupby(rank[sample]).nunique(dropna=False).to_numpy()
            if (n > 1).any():
                bad = np.flatnonzero(np.isin(rank[sample], np.flatnonzero(n > 1)))
                raise DatasetError(f"column {column} differs between the rows of one id on {where(df, bad)}; a sample "
                                   f"has one {name}")  # fmt: skip
        frame[name] = text.to_numpy()[np.asarray(rows)]
    return frame


def _fill(values: np.ndarray, days: np.ndarray, bands: Sequence[str], frame: pd.DataFrame, df) -> np.ndarray:
    """Gap-fill every sample's bands as the compositor does; a band without any value is an error."""
    for b, band in enumerate(bands):
        v = values[:, b, :].T[None, :, :, None]  # (1, T, N, 1): the compositor's (B, T, H, W)
        has = np.isfinite(v[0])
        none = np.flatnonzero(~has.any(axis=0)[:, 0])
        if len(none):
            raise DatasetError(f"band {band} has no value at any step for the sample(s) on "
                               f"{where(df, frame['row'].to_numpy()[none])}; give a value or drop them")  # fmt: skip
        interpolate_gaps(v, has, days)
        values[:, b, :] = v[0, :, :, 0].T
    return values.astype(np.float32)


def _codes(frame: pd.DataFrame, df: pd.DataFrame, taxonomy: Taxonomy, column: str) -> np.ndarray:
    """The taxonomy code of each sample's label (a leaf name, any case, or a code)."""
    labels = frame["label"]
    empty = np.flatnonzero(labels.isna().to_numpy() | (labels.fillna("") == "").to_numpy())
    if len(empty):
        raise DatasetError(f"column {column} is empty on {where(df, frame['row'].to_numpy()[empty])}; label every "
                           "sample or drop the unlabelled ones (`predict` takes unlabelled tables)")  # fmt: skip
    lookup = {name.lower(): code for name, code in zip(taxonomy.leaf_names(), taxonomy.codes, strict=True)}
    lookup |= {str(code): code for code in taxonomy.codes}
    key = labels.str.lower()
    unknown = key[~key.isin(list(lookup))]
    if len(unknown):
        counts = labels[unknown.index].value_counts()
        listed = ", ".join(f"{name!r} ({n} rows)" for name, n in counts.head(12).items())
        raise DatasetError(f"column {column} has labels not in the taxonomy ({taxonomy.n_leaves} classes): {listed}"
                           f"{' …' if len(counts) > 12 else ''}; add them to the taxonomy (--taxonomy) or relabel "
                           "those rows")  # fmt: skip
    return key.map(lookup).to_numpy(np.int64)


def _splits(frame: pd.DataFrame, df: pd.DataFrame, column: str) -> pd.Series:
    text = frame["split"].str.lower()
    bad = np.flatnonzero(~text.isin(list(SPLITS)).to_numpy())
    if len(bad):
        seen = sorted({str(v) for v in frame["split"].iloc[bad]})[:SHOWN]
        raise DatasetError(f"column {column} holds {', '.join(map(repr, seen))} on "
                           f"{where(df, frame['row'].to_numpy()[bad])}; splits are train, val or test")  # fmt: skip
    return text.map(SPLITS)


def read_table(path: Path | str, taxonomy: Taxonomy, label_column: str = "label", id_column: str = "id",
               time_column: str | None = None, split_column: str = "split", bands: Sequence[str] | None = None,
               step_days: float = 5.0, labelled: bool = True, expect=None) -> ParcelDataset:  # fmt: skip
    """The table at `path` as a dataset (see the module doc). labelled=False (predict) reads no labels (code 0).
    expect=(bands, steps) of a model: the table must hold them (check_model_input)."""
    spec = TableSpec(label_column, id_column, time_column, split_column,
                     tuple(bands) if bands else None, float(step_days))  # fmt: skip
    if spec.step_days <= 0:
        raise DatasetError(f"--step-days {step_days}: the days between steps must be positive")
    df = read_table_file(path)
    if labelled and spec.label_column not in df:
        raise DatasetError(f"{path} has no label column {spec.label_column!r} (columns: "
                           f"{', '.join(df.columns[:12])}{' …' if len(df.columns) > 12 else ''}); name it with "
                           "--label-column")  # fmt: skip
    if not len(df):
        raise DatasetError(f"{path} has no rows")
    found, model = series_columns(df.columns), (expect[0] if expect else None)
    s = _wide(df, spec, found, model) if found else _long(df, spec, model)
    if expect is not None:
        check_model_input(s.bands, s.days, s.tokens, s.layout, expect, spec.step_days)
    parcels = s.frame.assign(parcel=np.arange(len(s.frame)), window=s.frame["id"], last_code=0, n_pure=1,
                             lon=np.nan, lat=np.nan, temperature=np.nan, province="")  # fmt: skip
    parcels["code"] = _codes(s.frame, df, taxonomy, spec.label_column) if labelled else 0
    if "split" in parcels and labelled:
        parcels["split"] = _splits(s.frame, df, spec.split_column).to_numpy()
    n_missing = int(np.isnan(s.values).sum())
    values = _fill(s.values, s.days, s.bands, s.frame, df)
    source = {"kind": "table", "path": str(path), "layout": s.layout, "bands": list(s.bands), "steps": s.tokens,
              "step_days": spec.step_days, "label_column": spec.label_column, "id_column": spec.id_column,
              "n": len(parcels), "filled_values": n_missing}  # fmt: skip
    drop = ["label"] + ([] if labelled else ["split"])
    return ParcelDataset(
        values, parcels.drop(columns=drop, errors="ignore"), s.bands, s.days.astype(np.int64), {"source": source}
    )


def _column_names(bands, days, layout: str, step_days: float, width: int) -> list[str]:
    if layout == "long":
        return [f"{b} at step {d / step_days:g}" for b in bands for d in days]
    return [f"{b}_{round(d / step_days):0{width}d}" for b in bands for d in days]


def check_model_input(bands, days, tokens, layout: str, expect, step_days: float) -> None:
    """A model's (bands, steps) against a table's: missing bands or other steps are an error naming columns."""
    want_bands, want_days = list(expect[0]), np.asarray(expect[1], np.float64)
    width = max((len(t) for t in tokens), default=2)
    missing = [b for b in want_bands if b not in bands]
    if missing:
        cols = _column_names(missing, want_days[[0, -1]], layout, step_days, width)
        raise DatasetError(f"the model needs band(s) {', '.join(missing)} (columns {' … '.join(cols[:2])}); the table "
                           f"has {', '.join(bands)} — give it those bands or use a model trained on these")  # fmt: skip
    have = np.asarray(days, np.float64)
    lacking = [d for d in want_days if not np.isclose(have, d).any()]
    inside = have[(have >= want_days[0]) & (have <= want_days[-1])]  # a window's model: steps outside it are fine
    if len(have) == len(want_days) > 1 and lacking and layout == "wide" and have[-1] > have[0]:
        spacing = step_days * (want_days[-1] - want_days[0]) / (have[-1] - have[0])
        if np.allclose(have * spacing / step_days, want_days - want_days[0] + have[0] * spacing / step_days):
            raise DatasetError(f"the table has the model's {len(have)} steps, but the model was trained with "
                               f"--step-days {spacing:g} (days {want_days[0]:g}..{want_days[-1]:g}); pass "
                               f"--step-days {spacing:g}")  # fmt: skip
    if lacking or len(inside) != len(want_days):
        extra = [t for t, d in zip(tokens, have, strict=True) if not np.isclose(want_days, d).any()
                 and want_days[0] <= d <= want_days[-1]]  # fmt: skip
        detail = []
        if lacking:
            cols = _column_names(want_bands[:1], lacking, layout, step_days, width)
            detail.append(f"missing {', '.join(cols[:SHOWN])}{' …' if len(cols) > SHOWN else ''}")
        if extra:
            detail.append(f"steps the model lacks: {', '.join(extra[:SHOWN])}{' …' if len(extra) > SHOWN else ''}")
        raise DatasetError(f"the model takes {len(want_days)} steps (days {want_days[0]:g}..{want_days[-1]:g} at "
                           f"--step-days {step_days:g}); the table has {len(have)}: {'; '.join(detail)} — give the "
                           "table the model's steps (and the --step-days it was trained with)")  # fmt: skip
