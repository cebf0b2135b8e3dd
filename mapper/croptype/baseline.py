"""The random-forest baseline of the crop-type comparison: a forest over the flattened (bands × T) series,
predicting the leaf directly (flat); its levels are the leaf's taxonomy path, so it is always consistent.

It is XGBoost's random-forest mode (one boosting round of `n_trees` parallel trees, rows subsampled at
0.632 per tree as a bootstrap would keep, √F of the F features per split, learning rate 1) rather than
scikit-learn's forest: XGBoost is already a dependency (scikit-learn is not), multi-threaded, and uses a GPU
where its build has CUDA. Samples are weighted by 1 / their leaf's frequency (balanced). Leaves absent from
training are never predicted (probability 0), as in mapper.decide.

A saved forest is a directory, written atomically:

    <dir>/forest.json   the booster in XGBoost's JSON format
    <dir>/meta.json     format, kind, classes (leaf names), trained_leaves, taxonomy (describe()), input
                        {bands, steps}, params, training, sha256 of forest.json, versions
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mapper.croptype.checkpoint import check_bands, check_steps, check_taxonomy
from mapper.croptype.series import BANDS, STEP_DAYS_OF_YEAR
from mapper.croptype.taxonomy import Taxonomy, from_description
from mapper.models.checkpoint import CheckpointError, sha256_bytes
from mapper.store.json_file import read_json

FORMAT = "mapper-croptype-forest/1"
MODEL_FILE = "forest.json"
META_FILE = "meta.json"


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim != 3:
        raise ValueError(f"the forest takes (N, bands, T) series, got shape {x.shape}")
    return x.reshape(len(x), -1)


def _xgb_device(device: str) -> str:
    if device != "auto":
        return device
    import xgboost as xgb

    if not xgb.build_info().get("USE_CUDA"):  # the xgboost-cpu wheel
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def forest_params(n_features: int, n_trees: int, max_depth: int, seed: int, nthread: int, device: str) -> dict:
    return {
        "objective": "multi:softprob",
        "tree_method": "hist",
        "num_parallel_tree": int(n_trees),
        "learning_rate": 1.0,  # one round: the forest is the average of its trees, not a boosted sum
        "subsample": 0.632,  # the share of distinct rows a bootstrap sample holds
        "colsample_bynode": math.sqrt(n_features) / n_features,
        "max_depth": int(max_depth),
        "reg_lambda": 1e-5,  # (nearly) unregularised leaves, as a forest's
        "seed": int(seed),
        "nthread": int(nthread),
        "device": _xgb_device(device),
    }


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per sample n / (k · count of its class), k the number of classes present: every class weighs the same."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return (len(labels) / (len(counts) * counts))[inverse].astype(np.float32)


@dataclass
class ForestBaseline:
    booster: object  # xgboost.Booster
    taxonomy: Taxonomy
    trained_leaves: np.ndarray  # leaf index of each booster output
    bands: list[str]
    steps: list[int]
    meta: dict = field(default_factory=dict)  # params, training

    @classmethod
    def fit(
        cls,
        X: np.ndarray,
        leaf: np.ndarray,
        taxonomy: Taxonomy,
        n_trees: int = 500,
        max_depth: int = 12,
        seed: int = 0,
        nthread: int = 2,
        device: str = "auto",
        bands: Sequence[str] = BANDS,
        steps: Sequence[int] = STEP_DAYS_OF_YEAR,
    ) -> ForestBaseline:
        import xgboost as xgb

        x, leaf = _flat(X), np.asarray(leaf, np.int64)
        if len(x) != len(leaf) or not len(x):
            raise ValueError(f"{len(x)} series but {len(leaf)} labels; the forest needs one leaf per series")
        if leaf.min() < 0 or leaf.max() >= taxonomy.n_leaves:
            raise ValueError(f"labels must be leaf indices 0..{taxonomy.n_leaves - 1} of the taxonomy")
        present = np.unique(leaf)
        if len(present) < 2:
            raise ValueError(f"the training set has only leaf {taxonomy.leaf_names()[present[0]]!r}; need two or more")
        remap = np.full(taxonomy.n_leaves, -1, np.int64)
        remap[present] = np.arange(len(present))
        params = forest_params(x.shape[1], n_trees, max_depth, seed, nthread, device)
        data = xgb.DMatrix(x, label=remap[leaf], weight=balanced_weights(leaf))
        booster = xgb.train({**params, "num_class": len(present)}, data, num_boost_round=1)
        counts = np.bincount(leaf, minlength=taxonomy.n_leaves)
        training = {"n": len(x), "leaf_counts": dict(zip(taxonomy.leaf_names(), counts.tolist(), strict=True))}
        return cls(
            booster,
            taxonomy,
            present,
            [str(b) for b in bands],
            [int(d) for d in steps],
            {"params": params, "training": training},
        )

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, n_leaves) probabilities; leaves absent from training 0."""
        import xgboost as xgb

        x = _flat(X)
        if x.shape[1] != len(self.bands) * len(self.steps):
            raise ValueError(
                f"series of {x.shape[1]} values; the forest takes {len(self.bands)} bands × {len(self.steps)} steps"
            )
        out = np.zeros((len(x), self.taxonomy.n_leaves), np.float64)
        if len(x):
            p = self.booster.predict(xgb.DMatrix(x)).reshape(len(x), len(self.trained_leaves))
            out[:, self.trained_leaves] = p
        return out

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """leaf (N,), code (N,), levels (N, 4) the leaf's path, leaf_prob (N,), probs (N, n_leaves)."""
        probs = self.predict_proba(X)
        leaf = probs.argmax(axis=1)
        return {
            "leaf": leaf,
            "code": self.taxonomy.code_array()[leaf],
            "levels": self.taxonomy.paths[leaf],
            "leaf_prob": probs[np.arange(len(leaf)), leaf],
            "probs": probs,
        }

    def save(self, directory: Path | str) -> Path:
        import xgboost as xgb

        from mapper import __version__
        from mapper.store.atomic import atomic_directory

        raw = bytes(self.booster.save_raw("json"))
        meta = {
            "format": FORMAT,
            "kind": "croptype-forest",
            "classes": list(self.taxonomy.leaf_names()),
            "trained_leaves": self.trained_leaves.tolist(),
            "taxonomy": self.taxonomy.describe(),
            "input": {"bands": self.bands, "steps": self.steps},
            **self.meta,
            "sha256": sha256_bytes(raw),
            "mapper_version": __version__,
            "xgboost_version": xgb.__version__,
        }
        text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
        with atomic_directory(directory) as tmp:
            (tmp / MODEL_FILE).write_bytes(raw)
            (tmp / META_FILE).write_text(text, encoding="utf-8")
        return Path(directory)


def load_forest(
    directory: Path | str,
    expect_taxonomy: Taxonomy | None = None,
    expect_bands: Sequence[str] | None = None,
    expect_steps: Sequence[int] | None = None,
) -> ForestBaseline:
    """Load and verify a saved forest (files, format, sha256), checking it against the data's taxonomy, bands
    and steps when given (CheckpointError naming the difference)."""
    import xgboost as xgb

    directory = Path(directory)
    fix = "re-train the forest or re-copy the whole directory"
    missing = [n for n in (META_FILE, MODEL_FILE) if not (directory / n).is_file()]
    if missing:
        raise CheckpointError(f"forest {directory} is missing {', '.join(missing)}; {fix}")
    meta = read_json(directory / META_FILE, FORMAT, "a crop-type forest", fix, CheckpointError)
    where = str(directory)
    if expect_taxonomy is not None:
        check_taxonomy(meta, expect_taxonomy, where)
    if expect_bands is not None:
        check_bands(meta, list(expect_bands), where)
    if expect_steps is not None:
        check_steps(meta, list(expect_steps), where)
    raw = (directory / MODEL_FILE).read_bytes()
    if sha256_bytes(raw) != meta["sha256"]:
        raise CheckpointError(f"{directory / MODEL_FILE} is corrupt (sha256 differs from {META_FILE}); {fix}")
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    extra = {k: meta[k] for k in ("params", "training") if k in meta}
    return ForestBaseline(
        booster,
        from_description(meta["taxonomy"]),
        np.asarray(meta["trained_leaves"], np.int64),
        list(meta["input"]["bands"]),
        [int(d) for d in meta["input"]["steps"]],
        extra,
    )
