"""The two block-level XGBoost models of the CropLayer method (DESIGN items 6-7, paper §4.2.3-4.2.4, Fig. 11).

* correctness: one row per block × source; labels TP, TN, FP, Noise (very small errors), Artifact (imagery
  inconsistencies). The paper reports 94.3 % overall accuracy and a TP + TN share of 96.5 %.
* integration: one row per block; labels Neither, Only A, Only B, Merge (union of the two sources).

Input is a pandas table with a `label` column (class names), a `block_id` column and numeric feature columns.
NaN is allowed in features and left to XGBoost's native missing-value handling (a DEM that does not cover a
block yields NaN terrain features); ±inf is refused.

Classes absent from a training table: XGBoost needs contiguous labels 0..k-1, so the booster is trained on
the classes present (`trained_classes`, in the order of `classes`) and `predict_proba` scatters its outputs
into the full class list, giving absent classes probability 0 (the model never saw them, so never predicts
them). At least two classes must be present.

A saved model is a directory (never a pickle):

    <dir>/model.ubj     the booster in XGBoost's own UBJSON format
    <dir>/model.json    format, kind, classes, trained_classes, features (in order), params, training,
                        metrics, sha256 of model.ubj, mapper_version, xgboost_version, created, files
    <dir>/<report>      optional reports written with the model (metrics.json, confusion.png, importance.png),
                        each with its sha256 under "files"

It is written under a temporary name and renamed into place (as `mapper.models.checkpoint` does), so a kill
leaves the old directory or the new one. `load` verifies the sha256 before it parses the booster; file
problems raise `CheckpointError` (a user error), table problems `DecisionTableError` (a ValueError).

scikit-learn is deliberately not a dependency: the split, the metrics and permutation importance are a few
lines of numpy here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mapper.decide.plots import confusion_png, importance_png
from mapper.models.checkpoint import CheckpointError, sha256_bytes
from mapper.store.atomic import atomic_directory
from mapper.store.json_file import read_json

if TYPE_CHECKING:
    import pandas as pd
    import xgboost as xgb

FORMAT = "mapper-decision-model/1"
MODEL_FILE = "model.ubj"
META_FILE = "model.json"

CORRECTNESS = ("TP", "TN", "FP", "Noise", "Artifact")
INTEGRATION = ("Neither", "Only A", "Only B", "Merge")
CLASSES = {"correctness": CORRECTNESS, "integration": INTEGRATION}
SEMANTICALLY_CORRECT = ("TP", "TN")

LABEL_COLUMN = "label"
BLOCK_COLUMN = "block_id"
SOURCE_COLUMN = "source"  # optional; when present, evaluate() also reports the TP + TN shares per source

# Small tabular data (thousands of blocks, 16-30 features): shallow trees, a moderate learning rate and row /
# column subsampling keep the model from memorising single blocks; hist is fast and handles NaN natively.
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "multi:softprob",
    "eval_metric": "mlogloss",
    "tree_method": "hist",
    "max_depth": 5,
    "eta": 0.08,
    "num_boost_round": 300,
    "subsample": 0.9,
    "colsample_bytree": 0.9,
    "min_child_weight": 1.0,
    "lambda": 1.0,
    "nthread": 2,
}

REBUILD_HINT = "rebuild the table with this mapper version or retrain the model"


class DecisionTableError(ValueError):
    """A training or prediction table that does not fit (columns, labels, values); the message names the fix."""


# ----------------------------------------------------------------------------------------------- tables


def _classes_for(kind: str, classes: Sequence[str] | None) -> tuple[str, ...]:
    if kind not in CLASSES:
        raise ValueError(f"model kind {kind!r} is not one of {', '.join(CLASSES)}")
    classes = tuple(CLASSES[kind] if classes is None else classes)
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"classes must be at least two distinct names, got {list(classes)}")
    return classes


def _label_repr(v: Any) -> str:
    return "<missing>" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def encode_labels(values: Any, classes: Sequence[str]) -> np.ndarray:
    """Indices into `classes` of each label; unknown labels (NaN included) raise DecisionTableError."""
    values = np.asarray(values, dtype=object)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({_label_repr(v) for v in values if not isinstance(v, str) or v not in index})
    if unknown:
        raise DecisionTableError(
            f"unknown label(s) {unknown} in column {LABEL_COLUMN!r}; allowed: {list(classes)}. Fix the labels or "
            "train the other kind of model"
        )
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))


def feature_matrix(df: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """float32 matrix of `features` in that order (extra columns ignored); NaN stays NaN for XGBoost."""
    from pandas.api.types import is_numeric_dtype

    missing = [f for f in features if f not in df.columns]
    if missing:
        known = {*features, LABEL_COLUMN, BLOCK_COLUMN, SOURCE_COLUMN}
        extra = [str(c) for c in df.columns if c not in known]
        hint = f"; columns the model does not know: {extra}" if extra else ""
        raise DecisionTableError(f"table lacks feature column(s) {missing} the model uses{hint}; {REBUILD_HINT}")
    non_numeric = [f for f in features if not is_numeric_dtype(df[f].dtype)]
    if non_numeric:
        raise DecisionTableError(f"feature column(s) {non_numeric} are not numeric; encode them as numbers")
    # float32: XGBoost works in float32 anyway, and the same matrix before and after a save gives the same output.
    x = df[list(features)].to_numpy(dtype=np.float32, na_value=np.nan)
    if np.isinf(x).any():
        bad = [f for f, col in zip(features, np.isinf(x).T, strict=True) if col.any()]
        raise DecisionTableError(f"feature column(s) {bad} contain ±inf; use NaN for values that do not exist")
    return x


def _require_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DecisionTableError(f"table lacks column(s) {missing}; {REBUILD_HINT}")


# ----------------------------------------------------------------------------------------------- model


def resolved_params(params: Mapping[str, Any] | None, seed: int) -> dict[str, Any]:
    """DEFAULT_PARAMS updated by `params`; `seed` always wins (it is the run's one source of randomness)."""
    merged = {**DEFAULT_PARAMS, **(params or {})}
    merged["seed"] = int(seed)
    if merged["objective"] != "multi:softprob":
        raise ValueError("objective must be multi:softprob (the models report class probabilities)")
    return merged


@dataclass
class DecisionModel:
    kind: str  # "correctness" | "integration"
    classes: tuple[str, ...]  # every class the model may output, in output order
    features: list[str]  # feature columns, in the booster's column order
    booster: xgb.Booster
    trained_classes: tuple[str, ...]  # the booster's outputs: classes present in training, in `classes` order
    meta: dict = field(default_factory=dict)  # params, training, metrics, versions

    @classmethod
    def fit(
        cls,
        df: pd.DataFrame,
        kind: str,
        classes: Sequence[str] | None,
        features: Sequence[str],
        params: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> DecisionModel:
        """Train on every row of `df` (split first: see `stratified_split` / `train_and_report`)."""
        import xgboost as xgb

        from mapper import __version__

        classes = _classes_for(kind, classes)
        features = list(features)
        if len(set(features)) != len(features) or not features:
            raise ValueError("features must be a non-empty list of distinct column names")
        leaks = [f for f in features if f in (LABEL_COLUMN, BLOCK_COLUMN)]
        if leaks:
            raise ValueError(f"{leaks} cannot be features (they identify the answer or the block)")
        _require_columns(df, [LABEL_COLUMN])
        y_full = encode_labels(df[LABEL_COLUMN], classes)
        present = np.unique(y_full)
        if len(present) < 2:
            raise DecisionTableError(
                f"training table has {len(present)} class(es) ({[classes[i] for i in present]}); "
                "a classifier needs at least two"
            )
        remap = np.full(len(classes), -1, dtype=np.int64)
        remap[present] = np.arange(len(present))
        x = feature_matrix(df, features)
        full = resolved_params(params, seed)
        booster_params = {k: v for k, v in full.items() if k != "num_boost_round"}
        booster_params["num_class"] = len(present)
        booster = xgb.train(
            booster_params, xgb.DMatrix(x, label=remap[y_full], missing=np.nan), num_boost_round=full["num_boost_round"]
        )
        counts = np.bincount(y_full, minlength=len(classes))
        training = {
            "n_rows": len(df),
            "n_blocks": int(df[BLOCK_COLUMN].nunique()) if BLOCK_COLUMN in df.columns else None,
            "class_counts": {c: int(n) for c, n in zip(classes, counts, strict=True)},
            "absent_classes": [c for c, n in zip(classes, counts, strict=True) if n == 0],
            "seed": int(seed),
        }
        meta = {"params": full, "training": training, "mapper_version": __version__, "xgboost_version": xgb.__version__}
        return cls(kind, classes, features, booster, tuple(classes[i] for i in present), meta)

    def update(self, df: pd.DataFrame, rounds: int, seed: int = 0) -> DecisionModel:
        """This model with `rounds` more trees fitted to `df`: boosting continues from the current trees, so a
        small table (a label campaign's decision sample) adapts the model instead of replacing it. Rows of a
        class the model was never trained on are left out (its outputs stay those it has)."""
        import copy

        import xgboost as xgb

        _require_columns(df, [LABEL_COLUMN])
        y = encode_labels(df[LABEL_COLUMN], self.classes)
        index = {self.classes.index(c): i for i, c in enumerate(self.trained_classes)}
        known = np.isin(y, list(index))
        if not known.any():
            raise DecisionTableError(f"no row of the table has a class the {self.kind} model knows "
                                     f"({', '.join(self.trained_classes)})")  # fmt: skip
        x = feature_matrix(df[known], self.features)
        labels = np.array([index[v] for v in y[known]], dtype=np.int64)
        params = {k: v for k, v in resolved_params(self.meta.get("params"), seed).items() if k != "num_boost_round"}
        params["num_class"] = len(self.trained_classes)
        booster = xgb.train(params, xgb.DMatrix(x, label=labels, missing=np.nan), num_boost_round=int(rounds),
                            xgb_model=self.booster.copy())  # fmt: skip
        meta = copy.deepcopy(self.meta)
        meta.setdefault("updates", []).append({"rows": int(known.sum()), "rows_left_out": int((~known).sum()),
                                               "rounds": int(rounds), "seed": int(seed)})  # fmt: skip
        return DecisionModel(self.kind, self.classes, self.features, booster, self.trained_classes, meta)

    def _proba_matrix(self, x: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        out = np.zeros((len(x), len(self.classes)), dtype=np.float64)
        if len(x):
            p = self.booster.predict(xgb.DMatrix(x, missing=np.nan)).reshape(len(x), len(self.trained_classes))
            out[:, [self.classes.index(c) for c in self.trained_classes]] = p
        return out

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """(N, len(classes)) probabilities, columns in `classes` order (absent classes: 0)."""
        return self._proba_matrix(feature_matrix(df, self.features))

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Class name of each row (object array)."""
        return np.asarray(self.classes, dtype=object)[self.predict_proba(df).argmax(axis=1)]


# ----------------------------------------------------------------------------------------------- split


def stratified_split(
    labels: Any, blocks: Any, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(train_rows, test_rows): sorted row indices. Whole blocks go to one side (the two sources of a block
    never straddle the split), stratified by each block's label: its majority label, ties going to the class
    that is rarer overall (so rare classes keep blocks on both sides). Per class, round(n · fraction) blocks
    are drawn for test, the leftover rounding by largest remainder, never taking a class's last training
    block. Deterministic for a given seed and input."""
    labels = np.asarray(labels, dtype=object)
    blocks = np.asarray(blocks)
    if len(labels) != len(blocks):
        raise ValueError(f"{len(labels)} labels but {len(blocks)} block ids")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    block_ids, block_of_row = np.unique(blocks, return_inverse=True)
    label_names, label_of_row = np.unique(labels.astype(str), return_inverse=True)
    counts = np.zeros((len(block_ids), len(label_names)))
    np.add.at(counts, (block_of_row, label_of_row), 1)
    overall = np.bincount(label_of_row, minlength=len(label_names))
    rarity = 0.5 * (1.0 - overall / (overall.max() + 1.0))  # < 1: only breaks ties between equal counts
    strata = (counts + (counts > 0) * rarity).argmax(axis=1)

    sizes = np.bincount(strata, minlength=len(label_names))
    ideal = sizes * test_fraction
    n_test = np.floor(ideal).astype(np.int64)
    n_test = np.minimum(n_test, np.maximum(sizes - 1, 0))
    rng = np.random.default_rng(seed)
    leftover = int(np.floor(len(block_ids) * test_fraction + 0.5)) - int(n_test.sum())
    order = np.lexsort((rng.random(len(sizes)), -(ideal - n_test)))  # largest remainder first, random ties
    for s in order:
        if leftover <= 0:
            break
        if sizes[s] - n_test[s] >= 2:
            n_test[s] += 1
            leftover -= 1

    test_block = np.zeros(len(block_ids), dtype=bool)
    for s in range(len(label_names)):
        members = rng.permutation(np.flatnonzero(strata == s))
        test_block[members[: n_test[s]]] = True
    test_row = test_block[block_of_row]
    return np.flatnonzero(~test_row), np.flatnonzero(test_row)


# ----------------------------------------------------------------------------------------------- metrics


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = truth, columns = prediction."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0  # undefined precision/recall count as 0, as scikit-learn's default does


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], kind: str | None = None, sources: Any = None
) -> dict:
    """Accuracy, per-class precision / recall / F1 / n and shares, the confusion matrix; for correctness also
    the TP + TN shares (see `semantic_correctness`). Macro F1 averages the classes that occur in the truth or
    the predictions (as scikit-learn does)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n = len(y_true)
    if n == 0:
        raise DecisionTableError("evaluation table is empty")
    cm = confusion_matrix(y_true, y_pred, len(classes))
    per_class, f1s = {}, []
    for i, c in enumerate(classes):
        tp, n_true, n_pred = cm[i, i], cm[i].sum(), cm[:, i].sum()
        precision, recall = _ratio(tp, n_pred), _ratio(tp, n_true)
        f1 = _ratio(2 * precision * recall, precision + recall)
        per_class[c] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "n": int(n_true),
            "n_predicted": int(n_pred),
            "true_share": n_true / n,
            "predicted_share": n_pred / n,
        }
        if n_true or n_pred:
            f1s.append(f1)
    out = {
        "n": n,
        "accuracy": float(np.trace(cm) / n),
        "macro_f1": float(np.mean(f1s)),
        "classes": list(classes),
        "per_class": per_class,
        "confusion": cm.tolist(),
        "confusion_axes": "rows: true class, columns: predicted class",
    }
    if kind == "correctness":
        out["semantic_correctness"] = semantic_correctness(y_true, y_pred, classes, sources)
    return out


def semantic_correctness(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], sources: Any = None) -> dict:
    """The paper's "TP + TN" rate: the share of block × source rows whose cropland is semantically correct.

    true_tp_tn_share is that share by the reference labels (the quantity itself, known on labelled blocks);
    predicted_tp_tn_share is what the model says, which is all a mapping run over unlabelled blocks has;
    binary_accuracy is how often the model gets correct-vs-not right. With a source column, also per source
    (the paper: 95.9 % Mapbox, 97.1 % Google)."""
    good = np.array([c in SEMANTICALLY_CORRECT for c in classes])
    t, p = good[np.asarray(y_true)], good[np.asarray(y_pred)]

    def shares(sel: np.ndarray) -> dict:
        return {
            "n": int(sel.sum()),
            "true_tp_tn_share": float(t[sel].mean()),
            "predicted_tp_tn_share": float(p[sel].mean()),
            "binary_accuracy": float((t[sel] == p[sel]).mean()),
        }

    out = shares(np.ones(len(t), dtype=bool))
    if sources is not None:
        src = np.asarray(sources, dtype=object).astype(str)
        out["by_source"] = {s: shares(src == s) for s in sorted(set(src))}
    return out


def evaluate(model: DecisionModel, df: pd.DataFrame) -> dict:
    """Metrics of `model` on a labelled table (see `classification_metrics`)."""
    _require_columns(df, [LABEL_COLUMN])
    y_true = encode_labels(df[LABEL_COLUMN], model.classes)
    y_pred = model.predict_proba(df).argmax(axis=1)
    sources = df[SOURCE_COLUMN] if SOURCE_COLUMN in df.columns else None
    return classification_metrics(y_true, y_pred, model.classes, model.kind, sources)


def permutation_importance(model: DecisionModel, df: pd.DataFrame, n_repeats: int = 5, seed: int = 0) -> dict:
    """Drop in accuracy when one feature column is shuffled (mean and std over `n_repeats` shuffles), on a
    labelled table, ideally held-out rows. Correlated features (Area and AF) share their importance: shuffling
    one leaves the other, so both can look less important than the pair is. Features sorted by mean drop."""
    if n_repeats < 1:
        raise ValueError("n_repeats must be at least 1")
    _require_columns(df, [LABEL_COLUMN])
    y = encode_labels(df[LABEL_COLUMN], model.classes)
    x = feature_matrix(df, model.features)
    if len(x) == 0:
        raise DecisionTableError("importance table is empty")
    baseline = float((model._proba_matrix(x).argmax(axis=1) == y).mean())
    rng = np.random.default_rng(seed)
    rows = []
    for j, name in enumerate(model.features):
        # All repeats of one feature in one prediction call: a stack of shuffled copies.
        stacked = np.tile(x, (n_repeats, 1))
        for r in range(n_repeats):
            stacked[r * len(x) : (r + 1) * len(x), j] = x[rng.permutation(len(x)), j]
        pred = model._proba_matrix(stacked).argmax(axis=1).reshape(n_repeats, len(x))
        drops = baseline - (pred == y).mean(axis=1)
        rows.append({"feature": name, "mean": float(drops.mean()), "std": float(drops.std())})
    rows.sort(key=lambda r: -r["mean"])  # stable: ties keep the model's feature order
    return {
        "metric": "accuracy",
        "baseline": baseline,
        "n": len(x),
        "n_repeats": n_repeats,
        "seed": seed,
        "features": rows,
    }


# ----------------------------------------------------------------------------------------------- files


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n"


def save(model: DecisionModel, directory: Path | str, extra_files: Mapping[str, bytes] | None = None) -> Path:
    """Write the model directory atomically (replacing any directory there); `extra_files` {name: bytes} are
    reports written into it with their sha256 listed in model.json. Returns the directory."""
    import xgboost as xgb

    from mapper import __version__

    directory = Path(directory)
    extra_files = dict(extra_files or {})
    for name in extra_files:
        if name in (MODEL_FILE, META_FILE) or Path(name).name != name or name.startswith("."):
            raise ValueError(f"extra file name {name!r} must be a plain file name other than {MODEL_FILE}/{META_FILE}")
    raw = bytes(model.booster.save_raw("ubj"))
    meta = {
        "format": FORMAT,
        "kind": model.kind,
        "classes": list(model.classes),
        "trained_classes": list(model.trained_classes),
        "features": list(model.features),
        **{k: v for k, v in model.meta.items() if k not in ("format", "sha256", "files", "created")},
        "sha256": sha256_bytes(raw),
        "files": {name: sha256_bytes(data) for name, data in extra_files.items()},
        "mapper_version": __version__,  # the versions that wrote these files
        "xgboost_version": xgb.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with atomic_directory(directory) as tmp:
        for name, data in {MODEL_FILE: raw, **extra_files, META_FILE: to_json(meta).encode("utf-8")}.items():
            with open(tmp / name, "xb") as f:  # created by us, so with the user's umask
                f.write(data)
    return directory


def _num_class(booster: xgb.Booster) -> int:
    config = json.loads(booster.save_config())
    return int(config["learner"]["learner_model_param"]["num_class"])


def load(directory: Path | str, kind: str | None = None) -> DecisionModel:
    """Load and verify a model directory: files present, format, sha256 of model.ubj (checked on the bytes that
    are then parsed), booster shape against features/classes, and `kind` when given."""
    import xgboost as xgb

    directory = Path(directory)
    fix = "retrain or re-copy the whole directory"
    if not directory.is_dir():
        leftovers = sorted(directory.parent.glob(f".{directory.name}.old-*")) if directory.parent.is_dir() else []
        hint = f"; {leftovers[0]} is the previous model, left by an interrupted save: rename it" if leftovers else ""
        raise CheckpointError(f"decision model {directory} not found (a model is a directory){hint}")
    missing = [n for n in (META_FILE, MODEL_FILE) if not (directory / n).is_file()]
    if missing:
        raise CheckpointError(f"decision model {directory} is incomplete: missing {', '.join(missing)}; {fix}")
    meta = read_json(directory / META_FILE, FORMAT, "a mapper decision model", fix, CheckpointError,
                     required=("kind", "classes", "trained_classes", "features", "sha256"))  # fmt: skip
    if kind is not None and meta["kind"] != kind:
        raise CheckpointError(f"decision model {directory} is a {meta['kind']!r} model, not {kind!r}")
    data = (directory / MODEL_FILE).read_bytes()
    digest = sha256_bytes(data)
    if digest != meta["sha256"]:
        raise CheckpointError(f"{directory / MODEL_FILE} is corrupt: sha256 {digest} expected {meta['sha256']}; {fix}")
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgb.core.XGBoostError as e:
        raise CheckpointError(f"{directory / MODEL_FILE} is not a valid XGBoost model ({e}); {fix}") from e
    classes, trained = tuple(meta["classes"]), tuple(meta["trained_classes"])
    if booster.num_features() != len(meta["features"]) or _num_class(booster) != len(trained):
        raise CheckpointError(f"{directory / MODEL_FILE} does not match the features/classes in {META_FILE}; {fix}")
    if not set(trained) <= set(classes):
        raise CheckpointError(f"{directory / META_FILE}: trained_classes {list(trained)} not all in classes; {fix}")
    skip = ("format", "kind", "classes", "trained_classes", "features", "sha256", "files", "created")
    return DecisionModel(
        meta["kind"],
        classes,
        list(meta["features"]),
        booster,
        trained,
        {k: v for k, v in meta.items() if k not in skip},
    )


# ----------------------------------------------------------------------------------------------- all in one

TITLES = {"correctness": "Semantic correctness", "integration": "Integration"}


def train_and_report(
    df: pd.DataFrame,
    kind: str,
    features: Sequence[str],
    out_dir: Path | str,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    test_fraction: float = 0.2,
    n_repeats: int = 5,
) -> dict:
    """Split by block (stratified), fit on the training part, evaluate and compute permutation importance on
    the held-out part, and write out_dir (atomically, replacing it): model.ubj, model.json, metrics.json,
    confusion.png, importance.png. Returns the metrics written to metrics.json."""
    classes = _classes_for(kind, None)
    _require_columns(df, [LABEL_COLUMN, BLOCK_COLUMN])
    encode_labels(df[LABEL_COLUMN], classes)  # unknown labels fail before any work
    train_rows, test_rows = stratified_split(df[LABEL_COLUMN], df[BLOCK_COLUMN], test_fraction, seed)
    if len(test_rows) == 0 or len(train_rows) == 0:
        raise DecisionTableError(f"too few blocks ({df[BLOCK_COLUMN].nunique()}) to hold out {test_fraction:.0%}")
    train, test = df.iloc[train_rows], df.iloc[test_rows]
    model = DecisionModel.fit(train, kind, classes, features, params, seed)
    evaluation = evaluate(model, test)
    importance = permutation_importance(model, test, n_repeats, seed)
    split = {
        "test_fraction": test_fraction,
        "seed": seed,
        "train_rows": len(train),
        "test_rows": len(test),
        "train_blocks": int(train[BLOCK_COLUMN].nunique()),
        "test_blocks": int(test[BLOCK_COLUMN].nunique()),
    }
    model.meta["metrics"] = {"split": split, "test": evaluation}
    metrics = {
        "kind": kind,
        "features": list(features),
        "split": split,
        "training": model.meta["training"],
        "params": model.meta["params"],
        "test": evaluation,
        "importance": importance,
        "mapper_version": model.meta["mapper_version"],
        "xgboost_version": model.meta["xgboost_version"],
    }
    name = TITLES[kind]
    reports = {
        "metrics.json": to_json(metrics).encode("utf-8"),
        "confusion.png": confusion_png(evaluation, f"{name}: held-out blocks ({test_fraction:.0%})"),
        "importance.png": importance_png(importance, f"{name}: permutation importance (held-out blocks)"),
    }
    save(model, out_dir, extra_files=reports)
    return json.loads(to_json(metrics))  # plain Python types, exactly as written
