"""`mapper al init`: a new campaign directory — its identity, config, the three fixed samples, their labels on
the simulated world (or the ones given), the starting models and an empty ledger — and `open_campaign`.

Everything is checked before anything is written (provinces, sources, models, given labels), and the
identity (campaign.json) is written last, so a kill during init leaves a directory that init completes.

A province with fewer than 16 blocks in the validation sample gets a warning (logged, and kept in the identity
as `sample_warnings` for `mapper al status`): its decisions will rest on wide intervals. Nothing is known of
the spread before round 0's validation, which then says how many blocks a decision needs
(mapper.validation.sample_size).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from mapper.al.campaign import FORMAT, CampaignError, CampaignLayout, Ledger, digest, read_identity, write_sample
from mapper.al.samples import (
    copy_labels,
    labelled_ids,
    plan_of,
    random_sample,
    spread_pool,
    write_world_sample,
)
from mapper.store.atomic import atomic_write_text

log = logging.getLogger("mapper.al")


def _model_record(config) -> dict:
    from mapper.run.plan import model_fingerprint

    models = config.run.models
    kinds = ("iqa", "segmentation", "decisions")
    return {**{k: getattr(models, k) for k in kinds}, "sha256": {k: model_fingerprint(getattr(models, k), k)
                                                                 for k in kinds}}  # fmt: skip


def init_campaign(root: Path | str, config, provinces, source: str, *, name: str | None = None,
                  pool_run: Path | None = None, validation_labels: Path | None = None,
                  decision_labels: Path | None = None) -> CampaignLayout:  # fmt: skip
    """Create the campaign at `root` (see the module docstring); returns its layout."""
    from mapper.config.loader import resolved_config_yaml
    from mapper.run.plan import resolve_provinces
    from mapper.run.preflight import check_models, check_sources

    layout = CampaignLayout(Path(root))
    if layout.identity_file.exists():
        raise CampaignError(f"{layout.root} already holds a campaign; continue it (`mapper al status {layout.root}`) "
                            "or give another directory")  # fmt: skip
    sources = check_sources(config, source)
    check_models(config.run.models)
    region = resolve_provinces(provinces)
    world = config.simulated(sources)
    if not world and (validation_labels is None or decision_labels is None):
        raise CampaignError("for imagery other than the simulated world give --validation-labels DIR and "
                            "--decision-labels DIR: labelled blocks (e.g. labelled with `mapper labels ingest`) that "
                            "judge each round and retrain the decision models")  # fmt: skip
    plan = plan_of(region)
    province_of = dict(zip(plan["block_id"], plan["province"], strict=True))
    pool, pool_models = _pool(plan, config, pool_run)
    validation, decision = _fixed_samples(plan, set(pool), config.al, validation_labels, decision_labels,
                                          province_of)  # fmt: skip
    layout.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.config_file, resolved_config_yaml(config))
    for sample, ids in (("pool", pool), ("validation", validation), ("decision", decision)):
        write_sample(layout, sample, ids)
    _sample_labels(layout, config, sources, world, validation, decision, validation_labels, decision_labels)
    models = _model_record(config)
    Ledger.new(layout, {k: models[k] for k in ("iqa", "segmentation", "decisions")}).save()
    warnings = _sample_warnings(validation, province_of, [p.name for p in region.provinces])
    identity = {
        "format": FORMAT, "name": name or layout.root.name, "provinces": [p.name for p in region.provinces],
        "pcodes": [p.pcode for p in region.provinces], "sources": list(sources), "world": world,
        "world_seed": config.world.seed if world else None, "strategy": config.al.strategy,
        "round_blocks": config.al.round_blocks, "samples": {s: {"blocks": len(ids), "sha256": digest(ids)} for s, ids
                                                            in (("pool", pool), ("validation", validation),
                                                                ("decision", decision))},
        "province_of": {b: province_of[b] for b in (*pool, *validation, *decision)},
        "starting_models": models, "pool_run": str(pool_run) if pool_run else None, "pool_run_models": pool_models,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sample_warnings": warnings,
    }  # fmt: skip
    atomic_write_text(layout.identity_file, json.dumps(identity, indent=1, ensure_ascii=False) + "\n")  # last
    return layout


def _sample_warnings(validation: list[str], province_of: dict, provinces: list[str], unit: str = "blocks") -> list[str]:
    """The provinces with too few validation blocks (or chips) to decide on (mapper.validation.sample_size),
    logged."""
    from mapper.validation.sample_size import init_warnings

    out = init_warnings(validation, province_of, provinces, unit)
    for line in out:
        log.warning(line)
    return out


def _pool(plan, config, pool_run: Path | None) -> tuple[list[str], dict | None]:
    """The pool's blocks, and the models of the run they came from (when its predictions may be reused)."""
    if pool_run is None:
        return spread_pool(plan, config.al.pool_blocks), None
    from mapper.validation.run_data import open_run

    run = open_run(pool_run)
    try:
        done = [b for b in run.done if b in set(plan["block_id"])]
        models = run.identity.get("config", {}).get("run", {}).get("models")
    finally:
        run.close()
    if not done:
        raise CampaignError(f"--pool-run {pool_run} has no finished block in the campaign's provinces")
    return sorted(done), models


def _fixed_samples(plan, pool: set, al, validation_labels, decision_labels, province_of) -> tuple[list, list]:
    out = []
    taken = set(pool)
    for n, given, what, offset in ((al.validation_blocks, validation_labels, "validation", 1),
                                   (al.decision_blocks, decision_labels, "decision", 2)):  # fmt: skip
        if given is not None:
            ids = labelled_ids(given)
            outside = [b for b in ids if b not in province_of]
            if not ids:
                raise CampaignError(f"--{what}-labels {given}: no complete labelled block there")
            if outside:
                raise CampaignError(f"--{what}-labels {given}: {len(outside)} block(s) are not in the campaign's "
                                    f"provinces ({', '.join(outside[:3])})")  # fmt: skip
            ids = [b for b in ids if b not in taken]
        else:
            ids = random_sample(plan, n, taken, al.seed * 7919 + offset)
        taken |= set(ids)
        out.append(sorted(ids))
    return out[0], out[1]


def _sample_labels(layout, config, sources, world, validation, decision, validation_labels, decision_labels) -> None:
    if world:
        from mapper.labels.world import parse_world_sources

        renderings = parse_world_sources(sources, config)
        write_world_sample(config.world.seed, validation, layout.labels("validation"), renderings)
        write_world_sample(config.world.seed, decision, layout.labels("decision"), renderings)
    else:
        copy_labels(validation_labels, validation, layout.labels("validation"))
        copy_labels(decision_labels, decision, layout.labels("decision"))


def init_chip_campaign(root: Path | str, config, pool_chips: Path, validation_chips: Path, *, name: str | None = None,
                       gsd_m: float | None = None, annotator: str = "person") -> CampaignLayout:  # fmt: skip
    """Create a campaign over a pool of chips (mapper.al.chips, mapper.al.chip_rounds) at `root`: the pool's
    images copied (never its masks), the validation chips copied as they are. `annotator` "simulated" lets
    the rounds reveal each selected chip's own mask from `pool_chips` (a folder of labelled chips), the files
    a person would return; "person" waits for a labeller. The region is the campaign's name."""
    from mapper.al.chips import import_pool, pool_items
    from mapper.config.loader import resolved_config_yaml
    from mapper.labels.chips import chip_dirs, read_labelled_chip
    from mapper.run.preflight import check_models

    layout = CampaignLayout(Path(root))
    if layout.identity_file.exists():
        raise CampaignError(f"{layout.root} already holds a campaign; continue it (`mapper al status {layout.root}`) "
                            "or give another directory")  # fmt: skip
    if annotator not in ("person", "simulated"):
        raise CampaignError(f"--annotator {annotator!r}: give person or simulated")
    check_models(config.run.models)
    validation = chip_dirs(validation_chips)
    if not validation:
        raise CampaignError(f"--validation-chips {validation_chips}: no labelled chip there (make them with "
                            "`mapper labels import chips`)")  # fmt: skip
    for d in validation:
        read_labelled_chip(d)  # every validation chip readable before anything is written
    if annotator == "simulated" and not chip_dirs(pool_chips):
        raise CampaignError(f"--annotator simulated reveals the pool's own masks: --pool-chips {pool_chips} must be "
                            "labelled chips")  # fmt: skip
    items, ids = pool_items(pool_chips, gsd_m), [d.name for d in validation]
    overlap = sorted({cid for cid, _, _ in items} & set(ids))
    if overlap:
        raise CampaignError(f"{len(overlap)} chip(s) are in both the pool and the validation chips "
                            f"({', '.join(overlap[:3])}): a model must be judged on chips it cannot be taught")
    name = name or layout.root.name
    layout.root.mkdir(parents=True, exist_ok=True)
    pool = import_pool(items, layout.root / "pool")
    copy_labels(validation_chips, ids, layout.labels("validation"))
    atomic_write_text(layout.config_file, resolved_config_yaml(config))
    for sample, chips in (("pool", pool), ("validation", ids), ("decision", [])):
        write_sample(layout, sample, chips)
    Ledger.new(layout, {"segmentation": config.run.models.segmentation}).save()
    warnings = _sample_warnings(ids, dict.fromkeys(ids, name), [name], "chips")
    from mapper.run.plan import model_fingerprint

    identity = {
        "format": FORMAT, "kind": "chips", "name": name, "provinces": [name], "pcodes": [], "sources": ["chip"],
        "world": False, "world_seed": None, "strategy": config.al.strategy, "round_blocks": config.al.round_blocks,
        "samples": {s: {"blocks": len(v), "sha256": digest(v)} for s, v in (("pool", pool), ("validation", ids))},
        "province_of": {}, "annotator": annotator,
        "truth_chips": str(Path(pool_chips).resolve()) if annotator == "simulated" else None,
        "starting_models": {"segmentation": config.run.models.segmentation,
                            "sha256": {"segmentation": model_fingerprint(config.run.models.segmentation,
                                                                         "segmentation")}},
        "pool_run": None, "pool_run_models": None, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sample_warnings": warnings,
    }  # fmt: skip
    atomic_write_text(layout.identity_file, json.dumps(identity, indent=1, ensure_ascii=False) + "\n")  # last
    return layout


def open_campaign(root: Path | str, executor_factory, trainer=None, quiet: bool = True, config_files=()):
    """The campaign at `root`, ready for its steps (config: the saved one, with `config_files` merged over)."""
    from mapper.al.rounds import Campaign, run_inline
    from mapper.config import load_config
    from mapper.run.plan import resolve_provinces

    layout = CampaignLayout(Path(root))
    identity = read_identity(layout.root)
    config = load_config([layout.config_file, *config_files])
    region = None if identity.get("kind") == "chips" else resolve_provinces(identity["pcodes"])
    return Campaign(layout, identity, config, region, executor_factory, trainer or run_inline, quiet)
