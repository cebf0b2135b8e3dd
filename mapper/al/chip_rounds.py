"""The steps of a label round over a pool of chips (mapper.al.chips), recorded in the same ledger as a block
campaign's and resumed the same way (mapper.al.rounds.advance):

- **pool**: the model in force predicts the unlabelled pool chips; their table (mapper.al.chips.chip_table)
  goes to `runs/NNN-pool/blocks.parquet`, where selection and the k-center seeds of later rounds read it.
- **select**: mapper.al.select as for blocks (a one-source table: `random`, `uncertainty`, `combined`).
- **export**: `rounds/NNN/export/images/<chip>.tif`, chips.csv (why each was chosen) and a README: what to
  label and how to return it (`mapper labels import chips` into `rounds/NNN/returned/`).
- **label**: the labeller returns labelled chips (mask.tif + label.json, as `mapper labels import chips`
  writes them) into `rounds/NNN/returned/`; a campaign made with `--annotator simulated` has them written
  there from the pool's own labels (the masks hidden from every other step), the same files.
- **ingest**: each returned chip checked and copied into labels/train with its round (`"al": {"round": k}`).
- **train**: the segmentation fine-tuned on labels/train and al.base_labels (mapper.al.rounds.fine_tune).
- **validate**: the candidate predicts the validation chips; pixel IoU, semantic correctness (each chip's
  correctness class by mapper.decide.truth, its area from the chip's pixel size) and PCS (mapped over true
  cropland area, like for like), each with its block-bootstrap 95 % interval (a chip counts as a block);
  acceptance and the stop verdict as for blocks (mapper.al.verdict). No decision models: a chip has one
  source.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from mapper.al.campaign import CampaignError
from mapper.store.atomic import atomic_path, atomic_write_text

log = logging.getLogger("mapper.al")
MAPPING_GSD_M = 2.0  # mapper maps at 2 m: a fine-tune on chips learns there unless its init or recipe says otherwise

EXPORT_README = """Round {k} of label campaign {name}: {n} chip(s) to label (chips.csv says why each was chosen).

images/ holds each chip's image ({gsd} m pixels), named by its chip id. For every chip paint a mask of the same
size, named like its image (e.g. images/ID.tif -> masks/ID.png): 1 = cropland, 0 = not cropland, 255 = cannot
tell (a chip without cropland is all 0). Then take them back as labelled chips:
  mapper labels import chips --images {export}/images --masks MASKS --gsd {gsd} --out {returned}
  mapper al ingest {root}
(other mask values: --cropland-values / --not-values / --ignore-values or --class-map). A chip not returned is
left out of this round.
"""


def _models(c) -> dict:
    return dict(c.ledger.current["models"])


def _segmenter(checkpoint: str):
    from mapper.seg.predict import load_segmenter

    return load_segmenter(checkpoint)


def step_pool(c, k: int) -> dict:
    from mapper.al.rounds import _last_pool

    labelled = set(c.ledger.labelled_blocks())
    todo = [b for b in c.sample("pool") if b not in labelled]
    if not todo:
        raise CampaignError("every pool chip is labelled: grow the pool with a new campaign, or stop here")
    previous = _last_pool(c, k)
    if previous is not None:  # the models did not change since: its predictions stand (labelled ones unused)
        return {**previous, "blocks": len(todo), "reused": True}
    from mapper.al.chips import chip_table

    out = c.layout.run_dir(k, "pool")
    out.mkdir(parents=True, exist_ok=True)
    from mapper.al.strategies import get_strategy

    reads_model = bool(get_strategy(c.identity["strategy"]).needs(c.al.selection, ("a",)))
    segmenter = _segmenter(_models(c)["segmentation"]) if reads_model else None  # random reads no prediction
    table = chip_table(segmenter, [c.layout.pool_chip(b) for b in todo], c.identity["provinces"][0])
    with atomic_path(out / "blocks.parquet", suffix=".parquet") as tmp:
        table.to_parquet(tmp, index=False)
    return {"dir": str(out), "blocks": len(todo), "models": _models(c)}


def step_export(c, k: int) -> dict:
    import pandas as pd

    chosen = pd.read_parquet(c.ledger.round(k)["steps"]["select"]["file"])
    out = c.layout.export_dir(k)
    chips = chosen["block_id"].tolist()
    for chip in chips:
        target = out / "images" / f"{chip}.tif"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(c.layout.pool_chip(chip) / "image_chip.tif", tmp)
    gsd = sorted({json.loads((c.layout.pool_chip(b) / "chip.json").read_text())["gsd_m"] for b in chips})
    text = EXPORT_README.format(k=k, name=c.identity["name"], n=len(chips), gsd="/".join(f"{g:g}" for g in gsd),
                                export=out, returned=returned_dir(c, k), root=c.layout.root)  # fmt: skip
    atomic_write_text(out / "README.txt", text)
    chosen[["block_id", "rank", "strategy", "reason"]].rename(columns={"block_id": "chip"}).to_csv(
        out / "chips.csv", index=False)  # fmt: skip
    return {"dir": str(out), "blocks": chips}


def returned_dir(c, k: int) -> Path:
    return c.layout.round_dir(k) / "returned"


def step_label(c, k: int, returned: Path | None = None) -> dict:
    """The simulated annotator writes the selected chips' labelled chips from the pool's own labels; a person
    returns them (the step is done once any chip is back, or `returned` names another folder)."""
    from mapper.labels.chips import chip_dirs, read_labelled_chip, write_labelled_chip

    chips = c.ledger.round(k)["steps"]["select"]["blocks"]
    folder = Path(returned) if returned is not None else returned_dir(c, k)
    back = {p.name for p in chip_dirs(folder)} if folder.is_dir() else set()
    if returned is not None or (back and c.identity.get("annotator") != "simulated"):
        return {"annotator": "person", "returned": str(folder), "chips_back": len(back & set(chips))}
    truth = c.identity.get("truth_chips")
    if c.identity.get("annotator") != "simulated" or not truth:
        raise CampaignError(f"round {k} waits for its labels: label the chips in {c.layout.export_dir(k)} (see its "
                            f"README.txt), return them as labelled chips in {folder}, then run `mapper al ingest "
                            f"{c.layout.root}`")  # fmt: skip
    for chip in chips:
        if (folder / chip / "label.json").exists():
            continue
        src = read_labelled_chip(Path(truth) / chip)
        write_labelled_chip(folder, chip, src.rgb, src.mask, gsd_m=src.gsd_m, valid=src.valid,
                            origin="simulated annotator (the pool's labels)", dataset=src.meta.get("dataset"),
                            class_map=src.meta.get("class_map"))  # fmt: skip
    return {"annotator": "simulated", "returned": str(folder), "chips_back": len(chips)}


def step_ingest(c, k: int, returned: Path | None = None) -> dict:
    from mapper.labels.chips import chip_dirs, read_labelled_chip, write_labelled_chip

    chips = c.ledger.round(k)["steps"]["select"]["blocks"]
    folder = Path(c.ledger.round(k)["steps"]["label"]["returned"]) if returned is None else Path(returned)
    back = {p.name: p for p in chip_dirs(folder)} if folder.is_dir() else {}
    ingested, positive, negative, missing, bad = [], [], [], [], {}
    for chip in chips:
        if chip not in back:
            missing.append(chip)
            continue
        try:
            got = read_labelled_chip(back[chip])
        except ValueError as e:  # LabelError: named, the round goes on without it
            bad[chip] = str(e)
            continue
        if got.chip_id != chip:
            bad[chip] = f"its label.json names chip {got.chip_id!r}"
            continue
        write_labelled_chip(c.layout.labels("train"), chip, got.rgb, got.mask, gsd_m=got.gsd_m, valid=got.valid,
                            origin=got.meta.get("origin", "human"), dataset=got.meta.get("dataset"),
                            class_map=got.meta.get("class_map"),
                            extra={"al": {"round": k, "campaign": c.identity["name"]}})  # fmt: skip
        ingested.append(chip)
        (positive if (got.meta.get("cropland_fraction") or 0) > 0 else negative).append(chip)
    extra = sorted(set(back) - set(chips))
    for chip, why in bad.items():
        log.warning("round %d: returned chip %s not ingested: %s", k, chip, why)
    report = {"ingested": ingested, "positive": positive, "negative": negative, "todo": missing,
              "skipped": extra, "invalid": bad, "polygons_total": 0,
              "provinces": {c.identity["provinces"][0]: len(ingested)} if ingested else {}}  # fmt: skip
    atomic_write_text(c.layout.round_dir(k) / "ingest.json", json.dumps(report, indent=1) + "\n")
    return report


def step_train(c, k: int) -> dict:
    from mapper.al.rounds import fine_tune
    from mapper.models.checkpoint import sha256_file

    current = _models(c)
    if not c.ledger.round(k)["steps"]["ingest"]["ingested"]:
        return {"trained": False, "why": "no chip was ingested this round", "candidate": current}
    out = c.layout.model_dir(k, "seg")
    roots = [c.layout.labels("train"), *map(Path, c.al.base_labels)]
    seg = c.trainer(fine_tune, str(current["segmentation"]), roots, out, c.al, k, MAPPING_GSD_M)
    return {"trained": True, "seg": {**seg, "sha256": sha256_file(out / "weights.safetensors")},
            "candidate": {**current, "segmentation": str(out)}}  # fmt: skip


def step_validate(c, k: int) -> dict:
    from mapper.al.rounds import _sample_warnings
    from mapper.al.verdict import accept, verdicts

    steps = c.ledger.round(k)["steps"] if k else {}
    candidate = steps.get("train", {}).get("candidate") or _models(c)
    current = c.ledger.current.get("validation")
    stop, rule, region = c.al.stop.model_dump(), c.al.stop_rule, c.identity["provinces"][0]
    if current is not None and candidate == _models(c):
        return {"candidate": candidate, "adopted": False, "why": "no new model this round", **current,
                "verdicts": verdicts(current["provinces"], c.ledger, [region], stop, rule),
                "sample_warnings": _sample_warnings(current["provinces"], stop, k, "chips")}  # fmt: skip
    numbers = chip_numbers(_segmenter(candidate["segmentation"]), c.layout.labels("validation"))
    numbers = {"overall": numbers, "provinces": {region: numbers}}
    adopted, why = accept(numbers["overall"], current["overall"] if current else None, c.al.acceptance_tolerance)
    in_force = numbers if adopted else current
    if adopted:
        c.ledger.data["current"] = {"round": k, "models": candidate, "validation": numbers}
    return {"candidate": candidate, "candidate_numbers": numbers, "adopted": adopted, "why": why,
            "overall": in_force["overall"], "provinces": in_force["provinces"],
            "verdicts": verdicts(in_force["provinces"], c.ledger, [region], stop, rule),
            "sample_warnings": _sample_warnings(in_force["provinces"], stop, k, "chips")}  # fmt: skip


def chip_numbers(segmenter, labels: Path) -> dict:
    """Pixel IoU, semantic correctness and PCS of `segmenter` on the labelled chips under `labels`, pooled, each
    with its block-bootstrap 95 % interval (a chip is a block), and the chips' count. The chips are predicted
    and counted as `mapper evaluate seg` does (mapper.seg.evaluate); each chip's class is added here."""
    from mapper.decide.truth import NODATA, correctness_class
    from mapper.labels.chips import CHIP_SOURCE
    from mapper.seg.evaluate import evaluate_samples
    from mapper.seg.samples import find_samples
    from mapper.seg.train import iou_counts
    from mapper.validation.intervals import ci95
    from mapper.validation.semantic import CORRECT_CLASSES, correct_ci95, correct_rate

    samples = [s for s in find_samples([labels], None) if s.source == CHIP_SOURCE]
    if not samples:
        raise CampaignError(f"{labels}: no labelled chip to validate on")
    counts, classes, ids = [], [], []

    def per_chip(row, chip, target, result):
        ids.append(row["block"])
        prob = np.nan_to_num(result.probability, nan=0.0)
        counts.append(iou_counts(prob, target, segmenter.threshold))
        pred = (prob > segmenter.threshold).astype(np.uint8)
        pred[~chip.valid] = NODATA
        classes.append(correctness_class(pred, target, None, np.full(target.shape[0], row["gsd_m"] ** 2)))

    m = evaluate_samples(segmenter, samples, on_image=per_chip)
    tp, fp, fn = (np.array([c[i] for c in counts], np.float64) for i in range(3))
    return {"iou": m["iou"], "iou_ci95": ci95(tp, tp + fp + fn), "precision": m["precision"], "recall": m["recall"],
            "semantic_correctness": correct_rate(classes), "semantic_correctness_ci95": correct_ci95(classes),
            "pcs": float((tp + fp).sum() / max(1, (tp + fn).sum())), "pcs_ci95": ci95(tp + fp, tp + fn),
            "blocks": len(samples), "classes": {c: classes.count(c) for c in sorted(set(classes))},
            "threshold": segmenter.threshold,
            "per_block": {"ids": ids, "tp": tp.tolist(), "fp": fp.tolist(), "fn": fn.tolist(),
                          "correct": [1.0 if c in CORRECT_CLASSES else 0.0 for c in classes]}}  # fmt: skip


STEP_FUNCTIONS = {"pool": step_pool, "export": step_export, "label": step_label, "ingest": step_ingest,
                  "train": step_train, "validate": step_validate}  # fmt: skip
