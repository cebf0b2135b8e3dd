"""The two decision models together: train on one table pair, judge on another, and score the integrated map.

**Semantic predictions as integration features.** The integration model takes, beside both sources'
features and the terrain, the correctness model's predicted class of each source (`a_semantic`,
`b_semantic`: index in CORRECTNESS). For the integration model's *training* rows these come out of fold
(`out_of_fold_semantics`: k block-grouped folds, each predicted by a correctness model that never saw its
blocks), so the integration model learns from predictions as good as — not better than — those it will get
on new blocks; on held-out tables they come from the trained correctness model.

**The integrated map's IoU** (`integrated_iou`): each block's final mask under a choice (mapper.decide.truth
`final_mask`, Merge = union) is scored against its truth over the labelled pixels, area-weighted (true m²)
and pooled over the blocks, next to Only A, Only B, and the best choice per block (the oracle: what a
perfect integration model would reach).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mapper.decide.models import CORRECTNESS, DecisionModel, evaluate, load, train_and_report
from mapper.decide.table import INTEGRATION_FEATURES, SOURCE_FEATURES

SEMANTIC_FEATURES = ("a_semantic", "b_semantic")
CORRECTNESS_FEATURES = tuple(SOURCE_FEATURES)
INTEGRATION_MODEL_FEATURES = (*INTEGRATION_FEATURES, *SEMANTIC_FEATURES)


def block_folds(blocks: Sequence[str], k: int, seed: int) -> np.ndarray:
    """Fold index 0..k-1 of each row, whole blocks in one fold (deterministic by seed)."""
    unique = np.array(sorted(set(blocks)))
    order = np.random.default_rng([seed, 31]).permutation(len(unique))
    fold_of = {b: i % k for i, b in zip(range(len(unique)), unique[order], strict=True)}
    return np.array([fold_of[b] for b in blocks])


def out_of_fold_semantics(correctness_df, k: int = 5, seed: int = 0, params=None, fit=None) -> np.ndarray:
    """Predicted correctness class of every row, each from a model trained on the other folds' blocks (by
    `fit(rows)`, default: a new model with `params`)."""
    if fit is None:
        def fit(rows):
            return DecisionModel.fit(rows, "correctness", None, CORRECTNESS_FEATURES, params, seed)
    folds = block_folds(list(correctness_df["block_id"]), k, seed)
    out = np.empty(len(correctness_df), dtype=object)
    for f in range(k):
        held = folds == f
        if not held.any():
            continue
        out[held] = fit(correctness_df[~held]).predict(correctness_df[held])
    return out


def with_semantics(integration_df, correctness_df, predicted: Sequence[str], sources: Sequence[str] = ("a", "b")):
    """integration_df plus a_semantic / b_semantic: the predicted correctness class (index) of each source."""
    index = {(b, s): CORRECTNESS.index(c) for b, s, c in
             zip(correctness_df["block_id"], correctness_df["source"], predicted, strict=True)}  # fmt: skip
    out = integration_df.copy()
    for col, source in zip(SEMANTIC_FEATURES, sources, strict=True):
        out[col] = [index.get((b, source), np.nan) for b in out["block_id"]]
    return out


def train_decision_models(correctness_df, integration_df, out_dir: Path | str, seed: int = 0, params=None) -> dict:
    """Both models with their 80/20 reports: out_dir/correctness and out_dir/integration (model, metrics.json,
    confusion.png, importance.png)."""
    out_dir = Path(out_dir)
    correctness = train_and_report(correctness_df, "correctness", CORRECTNESS_FEATURES, out_dir / "correctness",
                                   seed, params)  # fmt: skip
    semantics = out_of_fold_semantics(correctness_df, seed=seed, params=params)
    integration_in = with_semantics(integration_df, correctness_df, semantics)
    integration = train_and_report(integration_in, "integration", INTEGRATION_MODEL_FEATURES, out_dir / "integration",
                                   seed, params)  # fmt: skip
    return {"correctness": correctness, "integration": integration}


def update_decision_models(models_dir: Path | str, correctness_df, integration_df, out_dir: Path | str,
                           rounds: int = 20, seed: int = 0) -> dict:
    """Both models of `models_dir` continued by `rounds` trees on a table pair (DecisionModel.update), written to
    out_dir/correctness and out_dir/integration; the integration rows get out-of-fold semantics from updates
    of the correctness model, as in training. Returns accuracies on the table itself (a small sample: no split)."""
    from mapper.decide.models import save, to_json

    correctness, integration = load_decision_models(models_dir)
    new_c = correctness.update(correctness_df, rounds, seed)
    semantics = out_of_fold_semantics(correctness_df, seed=seed, fit=lambda rows: correctness.update(rows, rounds,
                                                                                                     seed))  # fmt: skip
    integration_in = with_semantics(integration_df, correctness_df, semantics)
    new_i = integration.update(integration_in, rounds, seed)
    out_dir = Path(out_dir)
    report = {"from": str(models_dir), "rounds": rounds, "rows": {"correctness": len(correctness_df),
              "integration": len(integration_df)}}  # fmt: skip
    for name, model, df in (("correctness", new_c, correctness_df), ("integration", new_i, integration_in)):
        report[f"{name}_accuracy_in_sample"] = float(np.mean(model.predict(df) == df["label"].to_numpy()))
        save(model, out_dir / name, extra_files={"metrics.json": to_json({"update": report}).encode()})
    return report


def _area_counts(pred: np.ndarray, truth: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Area-weighted [tp, fp, fn] of a bool map against a 0/1/255 truth over labelled pixels."""
    labelled = truth != 255
    t = labelled & (truth == 1)
    p = labelled & pred
    w = areas[:, None]
    return np.array([(w * (p & t)).sum(), (w * (p & ~t)).sum(), (w * (~p & t)).sum()])


def integrated_iou(blocks: Mapping[str, str], label_root: Path | str, predictions_root: Path | str,
                   sources: Sequence[str] = ("a", "b")) -> dict:  # fmt: skip
    """Pooled area-weighted IoU over `blocks` {block_id: integration choice} of Only A, Only B, the chosen
    final masks, and the per-block best choice (see the module docstring)."""
    from mapper.decide.truth import candidate_masks, choose, integration_errors
    from mapper.grid.area import row_pixel_areas
    from mapper.labels.store import read_labelled_block
    from mapper.seg.predict import read_prediction

    totals = {name: np.zeros(3) for name in ("Only A", "Only B", "integrated", "best choice")}
    for block_id, choice in blocks.items():
        lb = read_labelled_block(Path(label_root) / block_id)
        a, b = (read_prediction(Path(predictions_root) / block_id / f"image_{s}.tif")[0] for s in sources)
        areas = row_pixel_areas(lb.block.window())
        cands = candidate_masks(a, b)
        best = choose(integration_errors(a, b, lb.mask, areas))
        for name, mask in (("Only A", cands["Only A"]), ("Only B", cands["Only B"]), ("integrated", cands[choice]),
                           ("best choice", cands[best])):  # fmt: skip
            totals[name] += _area_counts(mask, lb.mask, areas)
    return {name: (tp / (tp + fp + fn) if tp + fp + fn > 0 else None) for name, (tp, fp, fn) in totals.items()}


def evaluate_decision_models(models_dir: Path | str, correctness_df, integration_df, label_root, predictions_root,
                             sources: Sequence[str] = ("a", "b")) -> dict:  # fmt: skip
    """Both models judged on tables of blocks they were not trained on, and the integrated map's IoU."""
    models_dir = Path(models_dir)
    correctness: DecisionModel = load(models_dir / "correctness", "correctness")
    integration: DecisionModel = load(models_dir / "integration", "integration")
    semantic = correctness.predict(correctness_df)
    integration_in = with_semantics(integration_df, correctness_df, semantic, sources)
    choices = dict(zip(integration_in["block_id"], integration.predict(integration_in), strict=True))
    return {
        "correctness": evaluate(correctness, correctness_df),
        "integration": evaluate(integration, integration_in),
        "pixel_iou": integrated_iou(choices, label_root, predictions_root, sources),
        "blocks": len(choices),
    }


def to_json(obj) -> str:
    from mapper.decide.models import to_json as model_json

    return json.dumps(json.loads(model_json(obj)), indent=2)


def block_decisions(models_dir: Path | str, correctness_df, integration_df, sources: Sequence[str] = ("a", "b")):
    """One row per block (GeoDataFrame when the tables carry geometry): every feature of the integration table,
    each source's predicted correctness class and class probabilities (`a_pred_semantic`, `a_p_TP`, …), and
    the integration decision with its probabilities (`decision`, `p_Neither`, …). Truth-derived columns
    (`label`, `truth_*`) are kept when present, for comparison."""
    correctness, integration = load_decision_models(models_dir)
    return decide_blocks(correctness, integration, correctness_df, integration_df, sources)


def load_decision_models(models_dir: Path | str) -> tuple[DecisionModel, DecisionModel]:
    """(correctness, integration) of a models directory (`mapper decide train --out`) or a packaged name."""
    from mapper.models.registry import resolve_checkpoint

    models_dir = resolve_checkpoint(models_dir)
    return load(models_dir / "correctness", "correctness"), load(models_dir / "integration", "integration")


def decide_blocks(correctness: DecisionModel, integration: DecisionModel, correctness_df, integration_df,
                  sources: Sequence[str] = ("a", "b")):  # fmt: skip
    """`block_decisions` with the models already loaded (a pipeline worker loads them once)."""
    c_proba = correctness.predict_proba(correctness_df)
    semantic = np.asarray(correctness.classes, dtype=object)[c_proba.argmax(axis=1)]
    out = with_semantics(integration_df, correctness_df, semantic, sources)
    keyed = {(b, s): p for b, s, p in zip(correctness_df["block_id"], correctness_df["source"], c_proba, strict=True)}
    for prefix, source in zip(("a", "b"), sources, strict=True):
        probs = np.array([keyed.get((b, source), np.full(len(CORRECTNESS), np.nan)) for b in out["block_id"]])
        out[f"{prefix}_pred_semantic"] = [CORRECTNESS[int(i)] if i == i else None for i in out[f"{prefix}_semantic"]]
        for j, c in enumerate(correctness.classes):
            out[f"{prefix}_p_{c}"] = probs[:, j]
    i_proba = integration.predict_proba(out)
    out["decision"] = np.asarray(integration.classes, dtype=object)[i_proba.argmax(axis=1)]
    for j, c in enumerate(integration.classes):
        out[f"p_{c.replace(' ', '_')}"] = i_proba[:, j]
    return out


def write_final_masks(decisions, predictions_root: Path | str, out_dir: Path | str,
                      sources: Sequence[str] = ("a", "b")) -> list[Path]:  # fmt: skip
    """The final cropland mask of each block under its decision (Merge = union; 255 where neither source has
    imagery), as a uint8 GeoTIFF on the block's grid: out_dir/<block_id>.tif."""
    import rasterio

    from mapper.decide.truth import final_mask
    from mapper.grid.blocks import Block
    from mapper.imagery.mosaic import geotiff_profile
    from mapper.imagery.tiff_check import check_complete_geotiff
    from mapper.seg.predict import read_prediction
    from mapper.store.atomic import atomic_path

    written = []
    for block_id, choice in zip(decisions["block_id"], decisions["decision"], strict=True):
        a, b = (read_prediction(Path(predictions_root) / block_id / f"image_{s}.tif")[0] for s in sources)
        window = Block.parse(block_id).window()
        profile = geotiff_profile(window, 1, "uint8", "zstd", 256, 1)
        profile.update(nodata=255)
        path = Path(out_dir) / f"{block_id}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, check=check_complete_geotiff) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.write(final_mask(choice, a, b), 1)
            dst.update_tags(MAPPER_BLOCK=block_id, MAPPER_DECISION=choice)
        written.append(path)
    return written
