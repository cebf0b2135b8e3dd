"""Fine-tuning the segmentation network from a checkpoint: `mapper train seg --init CKPT`, and the training
step of an active-learning round.

A fine-tune keeps everything its starting weights depend on: the architecture and input window come from
the init checkpoint's own checkpoint.json (so a custom arch absent from configs/models.yaml fine-tunes too),
and so does the normalisation mean/std, never recomputed (the weights expect inputs scaled that way; new
statistics from a few new blocks would shift every activation). What changes is only what a short run
needs: a fresh optimizer, fewer steps, a lower peak learning rate and a short warm-up
(configs/train_seg_finetune.yaml says why). It trains on all the labels, old and new, with the blocks of the
newest round drawn `recent_weight` times as often (`SampleWeights.recent`), so the model learns the new
labels without forgetting what the old ones taught. checkpoint.json's training section names the init (path,
name, sha256 of its weights), the weighting rule and weights, and the steps.

**Decision threshold.** A calibrated init (`decision` in its checkpoint.json, mapper.seg.calibrate) gives a
calibrated fine-tune: the new weights' threshold is chosen again on the fine-tune's validation images (held out
from its training), so a label round from a real-imagery model does not silently fall back to 0.5. Without
validation images, or when they hold no cropland, the init's threshold is kept and marked `inherited_from`. An
uncalibrated init (seg-default) gives an uncalibrated fine-tune, as before.

    fine_tune_seg("seg-default", [Path("labels")], Path("ckpt/round3"), load_seg_train_config(FINETUNE_RECIPE))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from mapper.models.checkpoint import Checkpoint, CheckpointError, arch_differences
from mapper.models.registry import ModelSpec, load_model_registry
from mapper.seg.samples import SampleWeights, find_samples, split_samples
from mapper.seg.train import SegTrainConfig, SegTrainResult, check_output, train_seg

log = logging.getLogger(__name__)

FINETUNE_RECIPE_NAME = "train_seg_finetune.yaml"


def finetune_recipe() -> Path:
    """The packaged fine-tuning recipe (configs/train_seg_finetune.yaml), the settings `--init` starts from."""
    return Path(str(resources.files("mapper.configs").joinpath(FINETUNE_RECIPE_NAME)))


def load_init(init: str | Path) -> Checkpoint:
    """The segmentation checkpoint to start from: a directory or a packaged name ('seg-default'), with the
    sha256 of its weights verified."""
    from mapper.models.checkpoint import load_checkpoint
    from mapper.models.registry import resolve_checkpoint

    return load_checkpoint(resolve_checkpoint(init), kind="segmentation")


def init_spec(ckpt: Checkpoint) -> ModelSpec:
    """The arch and input window of a checkpoint, from its checkpoint.json alone (no registry look-up)."""
    meta = ckpt.meta
    spec = ModelSpec(
        name=meta.get("name") or ckpt.path.name,
        kind="segmentation",
        arch=meta["arch"],
        input={"size": meta["input"]["size"], "overlap": meta["input"].get("overlap", 0)},
    )
    if spec.arch != meta["arch"]:  # filling in defaults changed it: the weights were built from another dict
        diffs = "; ".join(arch_differences(meta["arch"], spec.arch))
        raise CheckpointError(f"checkpoint {ckpt.path} records an incomplete arch ({diffs}); re-train or re-copy it")
    return spec


def check_init_arch(arch: str, ckpt: Checkpoint, spec: ModelSpec) -> None:
    """CheckpointError unless the arch asked for (`--arch` or the settings' `arch`) is the init checkpoint's:
    a fine-tune cannot change the architecture its weights belong to."""
    registry = load_model_registry()
    hint = "drop --arch (and `arch:` from the settings): a fine-tune keeps its checkpoint's arch"
    if arch not in registry:
        if arch == spec.name:  # a custom arch named as the checkpoint names itself
            return
        raise CheckpointError(f"arch {arch!r} is not the arch of init checkpoint {ckpt.path} ({spec.name!r}); {hint}")
    want = registry[arch]
    diffs = arch_differences(spec.arch, want.arch)
    if want.input.size != spec.input.size:
        diffs.append(f"input size (checkpoint {spec.input.size}, expected {want.input.size})")
    if want.kind != "segmentation" or diffs:
        what = f"differing: {'; '.join(diffs)}" if want.kind == "segmentation" else f"{arch} is a {want.kind} model"
        raise CheckpointError(
            f"arch {arch!r} differs from {spec.name!r}, the arch of init checkpoint {ckpt.path} ({what}); {hint}"
        )


def fine_tune_seg(
    init: str | Path | Checkpoint,
    label_roots: Sequence[Path],
    out: Path,
    cfg: SegTrainConfig,
    *,
    recent_round: int | None = None,
    val_roots: Sequence[Path] | None = None,
    device: str | None = None,
    info: dict | None = None,
    on_validate: Callable[[dict], None] | None = None,
) -> SegTrainResult:
    """Fine-tune the segmentation checkpoint `init` (directory, packaged name or loaded) on all the labelled
    blocks under `label_roots`, writing a new checkpoint to `out` (which must not exist).

    The blocks of active-learning round `recent_round` (default: the newest round in the labels' label.json)
    are drawn cfg.recent_weight times as often as the others. Validation: `val_roots`, else cfg.val_fraction of
    the blocks held out. cfg.arch is ignored unless set explicitly, when it must be the checkpoint's."""
    ckpt = init if isinstance(init, Checkpoint) else load_init(init)
    spec = init_spec(ckpt)
    if "arch" in cfg.model_fields_set:
        check_init_arch(cfg.arch, ckpt, spec)
    cfg = cfg.model_copy(update={"arch": spec.name})  # so the recorded settings name the arch trained
    out = Path(out)
    check_output(out, False, spec, cfg.steps)  # before reading any labels
    samples = find_samples(label_roots, cfg.coverage)
    if val_roots:
        train, val = samples, find_samples(val_roots, cfg.coverage)
    else:
        train, val = split_samples(samples, cfg.val_fraction, cfg.seed)
    weights = SampleWeights.recent(train, cfg.recent_weight, recent_round)
    log.info(
        "fine-tuning %s (%s) for %d steps on %d images of %d blocks or chips; %s",
        ckpt.path, spec.name, cfg.steps, len(train), len({s.block_id for s in train}), weights.rule,
    )  # fmt: skip
    result = train_seg(
        train, out, cfg, val=val, device=device, info=info, on_validate=on_validate, spec=spec, init=ckpt,
        weights=weights,
    )  # fmt: skip
    recalibrate(ckpt, out, val, [str(p) for p in val_roots] if val_roots else ["held out of the training labels"],
                device)  # fmt: skip
    return result


def recalibrate(init: Checkpoint, out: Path, val: Sequence, labels: Sequence[str], device: str | None) -> None:
    """Give the fine-tune at `out` a decision threshold when its init had one (see the module docstring)."""
    decision = init.meta.get("decision")
    if not decision:
        return
    from mapper.models.checkpoint import update_checkpoint_meta
    from mapper.seg.calibrate import calibrate_checkpoint
    from mapper.seg.predict import load_segmenter

    if val:
        segmenter = load_segmenter(out, device=device)
        try:
            chosen = calibrate_checkpoint(out, val, labels, segmenter)
            log.info("fine-tune %s calibrated on %d validation images: %g", out, len(val), chosen["threshold"])
            return
        except ValueError as e:
            if "no cropland" not in str(e):
                raise
            log.warning("fine-tune %s not recalibrated (%s): keeping its init's threshold", out, e)
    else:
        log.warning("fine-tune %s has no validation images to recalibrate on: keeping its init's threshold", out)
    update_checkpoint_meta(out, {"decision": {**decision, "inherited_from": str(init.path)}})
