"""The steps of a label round, each resumable and recorded in the ledger:

    pool → select → export → label → ingest → train → validate

- **pool**: `mapper run` over the pool's unlabelled blocks with the models in force (the run's own stages and
  executors: in-process or Ray); its blocks.parquet is the selection's table.
- **select**: mapper.al.select on that table (never truth); the validation and decision samples and the blocks
  of provinces that have stopped are never selected. Earlier rounds count: k-center is seeded with the labelled
  blocks' features from the pool tables of the rounds that picked them, and the combined strategy's random and
  negative shares hold over the campaign (the picks per part that the ledger records for each selection).
- **export**: the QGIS hand-off folder of the selected blocks (mapper.al.handoff).
- **label**: on the simulated world the simulated annotator fills the returned GeoPackage; for real imagery a
  person does, and the round waits for `mapper al ingest`.
- **ingest**: the returned polygons become labelled blocks in labels/train (the round recorded in label.json).
- **train**: segmentation fine-tuned from the model in force on all labels, the new round weighted up; then the
  decision models retrained on tables of the decision sample predicted by the new segmentation (blocks it
  never trained on).
- **validate**: `mapper run` of the validation sample with the candidate models and the three-level
  validation; the candidate replaces the models in force only when it is worse on none of pooled IoU,
  semantic correctness and |PCS − 1| (beyond al.acceptance_tolerance or the sample's interval) and better on
  one (mapper.al.verdict.accept); then each province's stop verdict by al.stop_rule, with extra rounds from
  the ledger, and a warning where the validation sample is too small to decide (`sample_warnings`).

A step recorded in the ledger is never redone; one interrupted is redone (the runs in it resume). A round that
trained nothing (no label ingested) keeps the models and is validated again only if nothing was validated yet.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mapper.al.campaign import STEPS, CampaignError, CampaignLayout, Ledger, read_sample
from mapper.store.atomic import atomic_write_text

log = logging.getLogger("mapper.al")


class CampaignDone(CampaignError):
    """Nothing is left to do: every province stopped."""


def all_stopped(ledger: Ledger, provinces) -> bool:
    stopped = ledger.stopped()
    return bool(stopped) and all(stopped.get(p, False) for p in provinces)


def run_inline(fn, *args, **kwargs):
    """Runs a training function here (pipelines.campaigns runs it on a GPU actor of a cluster instead)."""
    return fn(*args, **kwargs)


@dataclass
class Campaign:
    """An open campaign: its layout, identity, config, region and sources, and where work runs."""

    layout: CampaignLayout
    identity: dict
    config: object  # MapperConfig
    region: object  # mapper.run.plan.Region
    executor_factory: Callable
    trainer: Callable = run_inline
    quiet: bool = True
    ledger: Ledger = field(init=False)

    def __post_init__(self):
        self.ledger = Ledger.load(self.layout)

    @property
    def al(self):
        return self.config.al

    @property
    def chips(self) -> bool:
        """A campaign over a pool of chips (mapper.al.chip_rounds), not blocks of the grid."""
        return self.identity.get("kind") == "chips"

    @property
    def sources(self) -> list[str]:
        return list(self.identity["sources"])

    @property
    def world_seed(self) -> int | None:
        return self.identity.get("world_seed") if self.identity.get("world") else None

    def sample(self, name: str) -> list[str]:
        return read_sample(self.layout, name)

    def province_of(self) -> dict[str, str]:
        return dict(self.identity["province_of"])


# ---------------------------------------------------------------------------------------------- runs
def run_blocks(c: Campaign, out: Path, blocks: list[str], models: dict) -> dict:
    """`mapper run` of exactly these blocks with these models, in the campaign's region (resumed if begun)."""
    from mapper.config.models import RunModelsConfig
    from mapper.run.session import RunRequest, run

    config = c.config.model_copy(update={"run": c.config.run.model_copy(update={"models": RunModelsConfig(**models)})})
    begun = (out / "run.json").exists()
    req = RunRequest(config, c.region, ",".join(c.sources), out=None if begun else out, resume=out if begun else None,
                     blocks=sorted(blocks), quiet=c.quiet)  # fmt: skip
    summary = run(req, c.executor_factory)
    return {"dir": str(out), "blocks": len(blocks), "finished": summary.get("finished"),
            "failed": summary.get("failed"), "seconds": summary.get("seconds")}  # fmt: skip


def _models(c: Campaign) -> dict:
    return dict(c.ledger.current["models"])


# ---------------------------------------------------------------------------------------------- steps
def step_pool(c: Campaign, k: int) -> dict:
    stopped = {p for p, s in c.ledger.stopped().items() if s}
    if stopped and stopped >= set(c.identity["provinces"]):
        raise CampaignDone("every province of the campaign meets the stop criteria: the campaign is done")
    province_of = c.province_of()
    labelled = set(c.ledger.labelled_blocks())
    todo = [b for b in c.sample("pool") if b not in labelled and province_of.get(b) not in stopped]
    if not todo:
        raise CampaignError("no pool block is left to predict: every pool block is labelled or its province has "
                            "stopped; grow the pool with a new campaign, or stop here")  # fmt: skip
    previous = _last_pool(c, k)
    if previous is not None:  # the models did not change since: its predictions stand (labelled ones unused)
        return {**previous, "blocks": len(todo), "reused": True}
    return {**run_blocks(c, c.layout.run_dir(k, "pool"), todo, _models(c)), "models": _models(c)}


def _last_pool(c: Campaign, k: int) -> dict | None:
    """The latest pool run made with the models in force (an earlier round's, or the init's --pool-run)."""
    for r in reversed(c.ledger.rounds):
        pool = r["steps"].get("pool")
        if r["round"] < k and pool and pool.get("models") == _models(c):
            return {"dir": pool["dir"], "models": pool["models"]}
    reuse = c.identity.get("pool_run")
    if reuse and c.identity.get("pool_run_models") == _models(c):
        return {"dir": reuse, "models": _models(c)}
    return None


def step_select(c: Campaign, k: int) -> dict:
    import geopandas as gpd
    import pandas as pd

    from mapper.al.select import select_blocks

    pool_dir = Path(c.ledger.round(k)["steps"]["pool"]["dir"])
    read = pd.read_parquet if c.chips else gpd.read_parquet  # a chip table has no geometry
    table = read(pool_dir / "blocks.parquet")
    stopped = {p for p, s in c.ledger.stopped().items() if s}
    never = set(c.sample("validation")) | set(c.sample("decision"))
    never |= {b for b, p in c.province_of().items() if p in stopped}
    earlier = [r for r in c.ledger.rounds if r["round"] < k and "select" in r["steps"]]
    seeds = _selected_features(earlier, c.al.selection.diversity_features)
    chosen = select_blocks(table, c.al.round_blocks, c.identity["strategy"], labelled=c.ledger.labelled_blocks(),
                           excluded=never, settings=c.al.selection, seed=c.al.seed * 1000 + k,
                           province_pcs=_province_pcs(c.ledger), quota_history=_quota_history(earlier),
                           labelled_features=seeds)  # fmt: skip
    if chosen.empty:
        raise CampaignError(f"round {k}: no block of the pool can be selected (all labelled, unusable or of stopped "
                            "provinces)")  # fmt: skip
    out = c.layout.round_dir(k) / "selection.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    from mapper.store.atomic import atomic_path

    with atomic_path(out, suffix=".parquet") as tmp:
        chosen.to_parquet(tmp, index=False)
    return {"blocks": chosen["block_id"].tolist(), "strategy": c.identity["strategy"], "file": str(out),
            "parts": {str(p): int(n) for p, n in chosen["strategy"].value_counts().items()}}  # fmt: skip


def _quota_history(earlier: list[dict]) -> dict[str, int]:
    """{part: picks} of the earlier rounds' selections (their strategy column, as the ledger records it)."""
    out: dict[str, int] = {}
    for r in earlier:
        for part, count in r["steps"]["select"].get("parts", {}).items():
            out[part] = out.get(part, 0) + int(count)
    return out


def _selected_features(earlier: list[dict], columns):
    """A DataFrame: block_id and the diversity `columns` of the blocks the earlier rounds selected, each from the
    pool table of the round that selected it (a later round's row last): the k-center seeds of labelled blocks
    that the pool runs no longer predict. A pool table that is gone leaves its round's blocks their spacing role
    only."""
    import pandas as pd
    import pyarrow.parquet as pq

    frames = []
    for r in earlier:
        blocks, path = r["steps"]["select"].get("blocks", []), Path(r["steps"]["pool"]["dir"]) / "blocks.parquet"
        if not blocks:
            continue
        if not path.exists():
            log.warning("round %d's pool table %s is gone: its selected blocks do not seed k-center", r["round"], path)
            continue
        present = set(pq.ParquetFile(path).schema_arrow.names)
        table = pd.read_parquet(path, columns=["block_id", *(c for c in columns if c in present)])
        frames.append(table[table["block_id"].isin(blocks)])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"block_id": []})


def _province_pcs(ledger: Ledger) -> dict[str, float]:
    for r in reversed(ledger.rounds):
        provinces = r["steps"].get("validate", {}).get("provinces")
        if provinces:
            return {p: v["pcs"] for p, v in provinces.items() if v.get("pcs") is not None}
    return {}


def step_export(c: Campaign, k: int) -> dict:
    import pandas as pd

    from mapper.al.handoff import ExportBlock, export_round

    steps = c.ledger.round(k)["steps"]
    pool_dir = Path(steps["pool"]["dir"])
    chosen = pd.read_parquet(steps["select"]["file"])
    import geopandas as gpd

    table = gpd.read_parquet(pool_dir / "blocks.parquet").set_index("block_id")
    blocks = []
    for _, row in chosen.iterrows():
        b = row["block_id"]
        coverage = {s: table.at[b, f"{p}_coverage"] for p, s in zip("ab", c.sources, strict=False)}  # 1 or 2
        blocks.append(ExportBlock(b, {s: pool_dir / "mosaics" / s / f"{b}.tif" for s in c.sources},
                                  pool_dir / "final" / f"{b}.tif", coverage, str(row["reason"])))  # fmt: skip
    out = c.layout.export_dir(k)
    if (out / "manifest.json").exists():  # exported before a kill, not yet recorded: keep it (and any edits)
        return {"dir": str(out), "blocks": [b.block_id for b in blocks], "kept": True}
    export_round(out, blocks, round_no=k, title=f"{c.identity['name']}: round {k} ({c.identity['strategy']})")
    return {"dir": str(out), "blocks": [b.block_id for b in blocks]}


def step_label(c: Campaign, k: int, returned: Path | None = None) -> dict:
    """The simulated annotator on the world; for real imagery the step is done when a person returned the file
    (the round's labels.gpkg edited in place, or another file given to ingest)."""
    from mapper.al.annotator import Degrade, simulate_annotator
    from mapper.al.handoff import read_manifest
    from mapper.al.labels_gpkg import content_digest

    out = c.layout.export_dir(k)
    if returned is not None and Path(returned).is_dir():
        raise CampaignError(f"--returned {returned} is a folder: a block campaign takes the returned GeoPackage back")
    if returned is not None or content_digest(out / "labels.gpkg") != read_manifest(out)["labels_digest"]:
        return {"annotator": "person", "returned": str(returned or out / "labels.gpkg")}
    if c.world_seed is None:
        raise CampaignError(
            f"round {k} waits for its labels: open {out / 'round.qgz'} in QGIS, correct the cropland polygons of "
            f"each block and set its status (see {out / 'README.txt'}), save, then run `mapper al ingest "
            f"{c.layout.root}`"
        )
    degrade = Degrade(c.al.annotator.min_field_m2, c.al.annotator.shift_px)
    cost = simulate_annotator(out, c.world_seed, degrade=degrade, seed=c.al.seed * 1000 + k)
    return {"annotator": "simulated", **{k: v for k, v in cost.to_dict().items() if k != "per_block"}}


def step_ingest(c: Campaign, k: int, returned: Path | None = None) -> dict:
    from mapper.al.handoff import ingest_round

    report = ingest_round(c.layout.export_dir(k), c.layout.labels("train"), returned=returned,
                          origin="world seed annotator" if c.world_seed is not None else "human",
                          extra={"campaign": {"name": c.identity["name"], "round": k}})  # fmt: skip
    atomic_write_text(c.layout.round_dir(k) / "ingest.json", json.dumps(report.to_dict(), indent=1) + "\n")
    province_of = c.province_of()
    provinces: dict[str, int] = {}
    for b in report.ingested:
        provinces[province_of.get(b, "?")] = provinces.get(province_of.get(b, "?"), 0) + 1
    return {**report.to_dict(), "provinces": provinces, "polygons_total": sum(report.polygons.values())}


def step_train(c: Campaign, k: int) -> dict:
    from mapper.models.checkpoint import sha256_file

    ingested = c.ledger.round(k)["steps"]["ingest"]["ingested"]
    current = _models(c)
    if not ingested:
        return {"trained": False, "why": "no block was ingested this round", "candidate": current}
    seg_out = c.layout.model_dir(k, "seg")
    roots = [c.layout.labels("train"), *map(Path, c.al.base_labels)]
    seg = c.trainer(fine_tune, str(current["segmentation"]), roots, seg_out, c.al, k)
    decide_out = c.layout.model_dir(k, "decide")
    decide_run = run_blocks(c, c.layout.run_dir(k, "decision"), c.sample("decision"),
                            {**current, "segmentation": str(seg_out)})  # fmt: skip
    decide = retrain_decisions(c, Path(decide_run["dir"]), decide_out, current["decisions"])
    candidate = {**current, "segmentation": str(seg_out)}
    if decide.get("trained"):
        candidate["decisions"] = str(decide_out)
    return {"trained": True, "seg": {**seg, "sha256": sha256_file(seg_out / "weights.safetensors")},
            "decision_run": decide_run, "decisions": decide, "candidate": candidate}  # fmt: skip


def fine_tune(init: str, labels: list[Path], out: Path, al, round_no: int, gsd_m: float | None = None) -> dict:
    """Fine-tune the segmentation (a plain function: it may run on a GPU actor); an interrupted fine-tune
    continues from its last checkpoint and ends where the uninterrupted one would. `gsd_m`: the pixel size to
    learn at when neither the recipe nor the init records one (a chip campaign's labels are not blocks)."""
    from mapper.seg.finetune import fine_tune_seg, finetune_recipe, init_spec, load_init, recalibrate
    from mapper.seg.samples import SampleWeights, find_samples
    from mapper.seg.train import load_seg_train_config, train_seg

    overrides = {k: v for k, v in {"steps": al.finetune_steps, "recent_weight": al.recent_weight}.items() if v}
    cfg = load_seg_train_config(al.finetune_config or finetune_recipe(), **overrides)
    # each campaign seed and round draws its own crops (the recipe's seed alone would make seeds of a campaign
    # whose selection reads no random number the same campaign)
    cfg = cfg.model_copy(update={"seed": cfg.seed + 1000 * al.seed + round_no})
    if gsd_m is not None and cfg.gsd_m is None and load_init(init).meta["input"].get("gsd_m") is None:
        cfg = cfg.model_copy(update={"gsd_m": gsd_m})
    meta = json.loads((out / "checkpoint.json").read_text()) if (out / "checkpoint.json").exists() else None
    if meta and meta.get("training", {}).get("complete"):
        return {"steps": meta["training"]["steps"], "seconds": meta["training"].get("seconds")}
    if meta:
        spec = init_spec(load_init(init))
        train = find_samples(labels, cfg.coverage)
        result = train_seg(train, out, cfg.model_copy(update={"arch": spec.name}), resume=True, spec=spec,
                           weights=SampleWeights.recent(train, cfg.recent_weight, round_no))  # fmt: skip
        recalibrate(load_init(init), out, [], [], None)  # as fine_tune_seg would have: keep a calibrated threshold
    else:
        result = fine_tune_seg(init, labels, out, cfg, recent_round=round_no)
    return {"steps": cfg.steps, "seconds": round(result.seconds, 1), "resumed": meta is not None}


def retrain_decisions(c: Campaign, run_dir: Path, out: Path, current: str) -> dict:
    """The decision models retrained on the decision sample as the new segmentation predicts it (its blocks'
    features, truth-derived labels from the sample's labels): trained anew from a sample of at least
    al.decision_retrain_blocks blocks, else the models in force continued by al.decision_update_trees trees (a
    few dozen blocks adapt a model; they would not make a good one)."""
    from mapper.decide.models import DecisionTableError
    from mapper.decide.pipeline import train_decision_models, update_decision_models
    from mapper.decide.table import build_tables

    predictions = run_dir / "predictions"
    for block in c.sample("decision"):  # the run's masks in the layout build_tables reads
        for s in c.sources:
            link = predictions / block / f"image_{s}.tif"
            target = run_dir / "masks" / s / f"{block}.tif"
            if target.exists() and not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(target.resolve())
    correctness, integration = build_tables(c.layout.labels("decision"), predictions, c.sources,
                                            dem=_dem(c))  # fmt: skip
    try:
        if len(integration) >= c.al.decision_retrain_blocks:
            metrics = train_decision_models(correctness, integration, out, seed=c.al.seed)
            return {"trained": True, "how": "anew", "blocks": len(integration),
                    "correctness_accuracy": metrics["correctness"]["test"].get("accuracy"),
                    "integration_accuracy": metrics["integration"]["test"].get("accuracy")}  # fmt: skip
        report = update_decision_models(current, correctness, integration, out, c.al.decision_update_trees,
                                        c.al.seed)  # fmt: skip
        return {"trained": True, "how": f"continued by {c.al.decision_update_trees} trees", "blocks": len(integration),
                **{k: v for k, v in report.items() if k.endswith("in_sample")}}  # fmt: skip
    except (DecisionTableError, ValueError) as e:  # too few or too uniform blocks: keep the models in force
        log.warning("decision models not retrained: %s", e)
        return {"trained": False, "why": str(e), "blocks": len(integration)}


def _dem(c: Campaign):
    """The DEM of the decision tables, as the run's features take it (mapper.run.stages)."""
    dem = c.config.run.dem
    if dem == "auto":
        return "world" if c.world_seed is not None else None
    return None if dem == "none" else dem


def step_validate(c: Campaign, k: int) -> dict:
    from mapper.al.verdict import accept, province_numbers, verdicts

    steps = c.ledger.round(k)["steps"] if k else {}
    candidate = steps.get("train", {}).get("candidate") or _models(c)
    current = c.ledger.current.get("validation")
    stop, rule = c.al.stop.model_dump(), c.al.stop_rule
    if current is not None and candidate == _models(c):  # nothing new to judge: the numbers in force stand
        return {"candidate": candidate, "adopted": False, "why": "no new model this round", **current,
                "verdicts": verdicts(current["provinces"], c.ledger, c.identity["provinces"], stop, rule),
                "sample_warnings": _sample_warnings(current["provinces"], stop, k)}  # fmt: skip
    run = run_blocks(c, c.layout.run_dir(k, "validation"), c.sample("validation"), candidate)
    report = validate_campaign_run(c, Path(run["dir"]))
    numbers = province_numbers(report)
    adopted, why = accept(numbers["overall"], current["overall"] if current else None, c.al.acceptance_tolerance)
    in_force = numbers if adopted else current
    result = {"run": run, "candidate": candidate, "candidate_numbers": numbers, "adopted": adopted, "why": why,
              "overall": in_force["overall"], "provinces": in_force["provinces"]}  # fmt: skip
    if adopted:
        c.ledger.data["current"] = {"round": k, "models": candidate, "validation": numbers}
    result["verdicts"] = verdicts(in_force["provinces"], c.ledger, c.identity["provinces"], stop, rule)
    result["sample_warnings"] = _sample_warnings(in_force["provinces"], stop, k)
    return result


def _sample_warnings(provinces: dict, thresholds: dict, k: int, unit: str = "blocks") -> dict[str, list[str]]:
    """{province: warnings} when the validation sample is too small to decide (mapper.validation.sample_size),
    logged as warnings too; `unit`: what the sample holds ("chips" in a chip campaign)."""
    from mapper.validation.sample_size import campaign_warnings

    out = campaign_warnings(provinces, thresholds, unit)
    for lines in out.values():
        for line in lines:
            log.warning("round %d: %s", k, line)
    return out


def validate_campaign_run(c: Campaign, run_dir: Path) -> dict:
    from mapper.validation.validate import validate_run

    labels = None if c.world_seed is not None else c.layout.labels("validation")
    return validate_run(run_dir, labels=labels, reuse=True)


STEP_FUNCTIONS = {"pool": step_pool, "select": step_select, "export": step_export, "label": step_label,
                  "ingest": step_ingest, "train": step_train, "validate": step_validate}  # fmt: skip


def _step_function(c: Campaign, step: str):
    """The step's function: a chip campaign's own (mapper.al.chip_rounds) where it has one."""
    if c.chips:
        from mapper.al import chip_rounds

        return chip_rounds.STEP_FUNCTIONS.get(step, STEP_FUNCTIONS[step])
    return STEP_FUNCTIONS[step]


def advance(c: Campaign, until: str = "validate", returned: Path | None = None) -> dict:
    """Do the open round's steps up to and including `until` (those recorded are skipped); returns the round."""
    entry = c.ledger.open_round()
    k = entry["round"]
    if k == 0:  # the baseline: the starting models on the validation sample
        if "validate" not in entry["steps"]:
            t0 = time.perf_counter()
            c.ledger.record(0, "validate", _step_function(c, "validate")(c, 0), time.perf_counter() - t0)
        entry["done"] = True
        c.ledger.save()
        return entry
    for step in STEPS[: STEPS.index(until) + 1]:
        if step in entry["steps"]:
            continue
        log.info("round %d: %s", k, step)
        fn = _step_function(c, step)
        t0 = time.perf_counter()
        result = fn(c, k, returned) if step in ("label", "ingest") else fn(c, k)
        c.ledger.record(k, step, result, time.perf_counter() - t0)
    if "validate" in entry["steps"]:
        entry["done"] = True
        c.ledger.save()
    return entry
