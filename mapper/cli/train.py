"""`mapper train`: train models on labelled blocks (IQA now; segmentation later)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click


class TrainUsageError(click.ClickException):
    """Bad arguments, labels or checkpoints: one clear line, exit 2 like the other user errors of `mapper`."""

    exit_code = 2


def _command_line() -> str | None:
    """The `mapper …` command line being run (None when not run from the `mapper` program, e.g. in tests)."""
    if sys.argv and Path(sys.argv[0]).name in ("mapper", "__main__.py"):
        return shlex.join(["mapper", *sys.argv[1:]])
    return None


labels_option = click.option(
    "--labels", "labels_roots", multiple=True, required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Labelled blocks or chips root (`mapper labels make|ingest|import`); repeatable to combine several.",
)  # fmt: skip
out_option = click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Checkpoint directory."
)
device_option = click.option("--device", help="torch device (default: cuda when available, else cpu).")


def val_labels_option(when: str):
    return click.option(
        "--val-labels", type=click.Path(exists=True, file_okay=False, path_type=Path),
        help=f"Labelled blocks or chips to validate on {when} (default: a held-out share of the --labels ones).",
    )  # fmt: skip


def settings_option(cls_name: str, example: str):
    return click.option(
        "--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=f"YAML of training settings (keys of {cls_name}, e.g. {example}).",
    )  # fmt: skip


train = click.Group("train", help="Train models (IQA coverage types, cropland segmentation) on labelled blocks.")


@train.command("iqa", short_help="Train the coverage-type classifier (ResNet) on labelled blocks.")
@labels_option
@val_labels_option("each epoch")
@click.option("--arch", help="Architecture from configs/models.yaml [default: iqa-resnet18-tiny].")
@out_option
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs [default: 80].")
@click.option("--resume", is_flag=True, help="Continue the unfinished run at --out after its last epoch.")
@settings_option("IQATrainConfig", "configs/train_iqa_default.yaml")
@click.option("--batch-size", type=click.IntRange(min=2), help="Batch size [default: 32].")
@click.option("--lr", type=float, help="Peak learning rate [default: 2e-3].")
@click.option("--seed", type=int, help="Seeds initialisation, split, sampling and augmentation [default: 0].")
@device_option
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Threads reading images.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def iqa(labels_roots, val_labels, arch, out, epochs, resume, config_file, batch_size, lr, seed, device, workers, quiet):
    """Train the coverage-type classifier (Planting, Non-planting, Cloudy, Snow/Ice, Nodata) on the images of
    labelled blocks, writing a checkpoint to OUT after every epoch.

    Views are cached beside the labels (.iqa_views_<size>.npz), so later runs read no GeoTIFF. Without
    --val-labels, a share of the blocks (val_fraction) is held out for the per-epoch validation accuracy."""
    from mapper.iqa.train import ViewSet, check_output, load_train_config, load_views, split_by_block, train_iqa
    from mapper.labels.store import LabelError
    from mapper.models.checkpoint import CheckpointError
    from mapper.models.registry import get_model_spec

    try:
        cfg = load_train_config(config_file, arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    except (ValueError, OSError) as e:
        raise TrainUsageError(f"training settings: {e}") from e
    try:
        spec = get_model_spec(cfg.arch, kind="iqa")
        check_output(out, resume, spec, cfg.epochs)  # before reading any labels
        size = spec.input.size
        data = ViewSet.concat([load_views(r, size, workers=workers, progress=not quiet) for r in labels_roots])
        if val_labels is not None:
            train_set, val_set = data, load_views(val_labels, size, workers=workers, progress=not quiet)
        else:
            train_set, val_set = split_by_block(data, cfg.val_fraction, cfg.seed)
        click.echo(
            f"{cfg.arch}: {len(train_set)} training images {train_set.class_counts()}"
            + (f", {len(val_set)} validation images" if val_set is not None else ", no validation")
        )
        missing = [c for c, k in train_set.class_counts().items() if k == 0]
        if missing:
            click.echo(f"warning: no training image of {', '.join(missing)}; label blocks where they occur", err=True)
        info = {
            "command": _command_line(),
            "labels": [str(p.resolve()) for p in labels_roots],
            "val_labels": str(val_labels.resolve()) if val_labels else None,
        }

        def show(rec):
            val = f"  val top-1 {rec['val_top1']:.3f}" if "val_top1" in rec else ""
            click.echo(
                f"epoch {rec['epoch']:>3}/{cfg.epochs}  loss {rec['train_loss']:.4f}  train acc {rec['train_acc']:.3f}"
                f"{val}  lr {rec['lr']:.2e}  {rec['seconds']:.1f}s"
            )

        result = train_iqa(train_set, out, cfg, val=val_set, resume=resume, device=device, info=info, on_epoch=show)
    except (LabelError, CheckpointError, ValueError) as e:
        raise TrainUsageError(str(e)) from e
    top1 = f"; validation top-1 {result.metrics['top1']:.3f}" if result.metrics else ""
    click.echo(f"trained {cfg.epochs} epochs in {result.seconds:.0f}s{top1} -> {out}")
    click.echo(f"evaluate it with: mapper evaluate iqa --checkpoint {out} --labels <held-out labels>")


@train.command("seg", short_help="Train the cropland segmentation network (Mask2Former) on labelled blocks.")
@labels_option
@val_labels_option("every val_every steps")
@click.option("--arch", help="Architecture from configs/models.yaml [default: seg-m2f-tiny].")
@out_option
@click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps [default: 2000].")
@click.option("--resume", is_flag=True, help="Continue the unfinished run at --out after its last checkpoint.")
@click.option(
    "--init", "init", metavar="CKPT",
    help="Fine-tune this checkpoint (directory or packaged name, e.g. seg-default): its arch and normalisation, "
    "a fresh optimizer, the settings of configs/train_seg_finetune.yaml unless --config is given.",
)  # fmt: skip
@settings_option("SegTrainConfig", "configs/train_seg_default.yaml")
@click.option("--batch-size", type=click.IntRange(min=1), help="Crops per step [default: 8].")
@click.option("--lr", type=float, help="Peak learning rate [default: 4e-4].")
@click.option("--seed", type=int, help="Seeds initialisation, split, crops and augmentation [default: 0].")
@device_option
def seg(labels_roots, val_labels, arch, out, steps, resume, init, config_file, batch_size, lr, seed, device):
    """Train the cropland segmentation network on random crops of labelled images (those of the coverage
    types segmentation runs on: Planting, Non-planting), validating pixel IoU and writing a checkpoint to OUT
    every val_every steps.

    With --init, fine-tune an existing checkpoint instead, on all the labels, the blocks of the newest
    active-learning round drawn recent_weight times as often."""
    from mapper.labels.store import LabelError
    from mapper.models.checkpoint import CheckpointError
    from mapper.models.registry import get_model_spec
    from mapper.seg.finetune import finetune_recipe
    from mapper.seg.samples import find_samples, split_samples
    from mapper.seg.train import check_output, load_seg_train_config, train_seg

    if init is not None and resume:
        raise TrainUsageError(
            "--init starts a new run from a checkpoint and --resume continues the run at --out; pass one of them"
        )
    if init is not None and config_file is None:
        config_file = finetune_recipe()
    try:
        cfg = load_seg_train_config(config_file, arch=arch, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    except (ValueError, OSError) as e:
        raise TrainUsageError(f"training settings: {e}") from e
    if init is not None:
        _fine_tune_seg(init, labels_roots, val_labels, out, cfg, device)
        return
    try:
        spec = get_model_spec(cfg.arch, kind="segmentation")
        check_output(out, resume, spec, cfg.steps)  # before reading any labels
        samples = find_samples(labels_roots, cfg.coverage)
        if val_labels is not None:
            train_set, val_set = samples, find_samples([val_labels], cfg.coverage)
        else:
            train_set, val_set = split_samples(samples, cfg.val_fraction, cfg.seed)
        blocks = len({s.block_id for s in train_set})
        click.echo(
            f"{cfg.arch}: {len(train_set)} training images of {blocks} blocks or chips"
            + (f", {len(val_set)} validation images" if val_set else ", no validation")
        )
        info = {
            "command": _command_line(),
            "labels": [str(p.resolve()) for p in labels_roots],
            "val_labels": str(val_labels.resolve()) if val_labels else None,
        }
        show = _show_seg_step(cfg.steps)
        result = train_seg(train_set, out, cfg, val=val_set, resume=resume, device=device, info=info, on_validate=show)
    except (LabelError, CheckpointError, ValueError) as e:
        raise TrainUsageError(str(e)) from e
    iou = f"; validation IoU {result.metrics['iou']:.3f}" if result.metrics else ""
    click.echo(f"trained {cfg.steps} steps in {result.seconds:.0f}s{iou} -> {out}")
    click.echo(f"evaluate it with: mapper evaluate seg --checkpoint {out} --labels <held-out labels>")


def _show_seg_step(steps: int):
    def show(rec):
        val = f"  val IoU {rec['val_iou']:.3f}" if rec.get("val_iou") is not None else ""
        click.echo(
            f"step {rec['step']:>6}/{steps}  loss {rec['train_loss']:.3f}{val}  lr {rec['lr']:.2e}  "
            f"{rec['seconds']:.0f}s (waiting for data {rec['data_wait_seconds']:.1f}s)"
        )

    return show


def _fine_tune_seg(init, labels_roots, val_labels, out, cfg, device) -> None:
    """`mapper train seg --init`: fine_tune_seg with the command's echo."""
    import json

    from mapper.labels.store import LabelError
    from mapper.models.checkpoint import META_FILE, CheckpointError
    from mapper.seg.finetune import fine_tune_seg

    info = {
        "command": _command_line(),
        "labels": [str(p.resolve()) for p in labels_roots],
        "val_labels": str(val_labels.resolve()) if val_labels else None,
    }
    click.echo(f"fine-tuning {init} for {cfg.steps} steps (lr {cfg.lr:g}, recent_weight {cfg.recent_weight:g})")
    try:
        result = fine_tune_seg(
            init, labels_roots, out, cfg, val_roots=[val_labels] if val_labels else None, device=device, info=info,
            on_validate=_show_seg_step(cfg.steps),
        )  # fmt: skip
    except (LabelError, CheckpointError, ValueError) as e:
        raise TrainUsageError(str(e)) from e
    training = json.loads((out / META_FILE).read_text(encoding="utf-8"))["training"]
    iou = f"; validation IoU {result.metrics['iou']:.3f}" if result.metrics else ""
    click.echo(
        f"fine-tuned {training['init']['name']} {cfg.steps} steps on {training['train']['images']} images of "
        f"{training['train']['blocks']} blocks or chips ({training['weighting']['rule']}) in {result.seconds:.0f}s{iou}"
        f" -> {out}"
    )
    click.echo(f"evaluate it with: mapper evaluate seg --checkpoint {out} --labels <held-out labels>")


@train.command("calibrate", short_help="Choose a segmentation checkpoint's decision threshold on held-out labels.")
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path),
              help="A checkpoint directory you trained (copy a packaged model first: this writes into it).")
@click.option("--labels", "labels_roots", multiple=True, required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Held-out labelled blocks or chips (the validation ones, never the test ones); repeatable.")
@click.option("--max-images", type=click.IntRange(min=1), help="A spread sample of N images.")
@device_option
@click.option("--quiet", "-q", is_flag=True, help="Only the result line.")
def calibrate(checkpoint, labels_roots, max_images, device, quiet):
    """Predict the held-out images whole, count cropland at thresholds 0.2-0.8 and record the one with the
    highest pooled pixel IoU in the checkpoint (`decision` in its checkpoint.json). Its masks in `mapper run`,
    `segment` and `evaluate` then use it; the probability band is unchanged. Calibrating again replaces it."""
    from mapper.labels.store import LabelError
    from mapper.models.checkpoint import CheckpointError
    from mapper.seg.calibrate import calibrate_checkpoint
    from mapper.seg.evaluate import select_samples
    from mapper.seg.predict import load_segmenter
    from mapper.seg.samples import find_samples

    if not checkpoint.is_dir():
        raise TrainUsageError(f"--checkpoint {checkpoint}: not a checkpoint directory; calibrate one you trained "
                              "(a packaged model: copy its folder out of mapper/data/models/ first)")  # fmt: skip
    try:
        segmenter = load_segmenter(checkpoint, device=device)
        samples = select_samples(find_samples(labels_roots, None), max_images)
        decision = calibrate_checkpoint(checkpoint, samples, [str(p.resolve()) for p in labels_roots], segmenter)
    except (LabelError, CheckpointError, ValueError) as e:
        raise TrainUsageError(str(e)) from e
    if not quiet:
        for t, iou in decision["iou_by_threshold"].items():
            click.echo(f"  threshold {t}: pooled IoU {'-' if iou is None else f'{iou:.4f}'}")
    at_default = decision["iou_at_0.5"]
    click.echo(f"{checkpoint}: decision threshold {decision['threshold']:g} (pooled IoU {decision['iou']:.4f} on "
               f"{decision['images']} held-out images; at 0.5: {'-' if at_default is None else f'{at_default:.4f}'})")


@train.command("fields", short_help="Train the field delineation model (U-Net, 3 classes) on the simulated world.")
@out_option
@click.option("--world-seed", type=int, help="The world whose fields it learns [default: 0].")
@click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps [default: 2000].")
@click.option("--windows", type=click.IntRange(min=1), help="Training windows drawn from farmland [default: 320].")
@click.option("--resume", is_flag=True, help="Continue the unfinished run at --out after its last checkpoint.")
@settings_option("FieldTrainConfig", "configs/train_fields.yaml")
@click.option("--seed", type=int, help="Seeds the windows, initialisation, crops and augmentation [default: 0].")
@device_option
def fields(out, world_seed, steps, windows, resume, config_file, seed, device):
    """Train the field model on windows of the simulated world's farmland and their field truth (background,
    field interior, field boundary), validating object F1 every val_every steps on other windows of the same
    world and keeping the best weights in OUT. Judge it on another world seed (`mapper fields evaluate`)."""
    from mapper.config.loader import load_settings
    from mapper.fields.train import FieldTrainConfig, train_fields
    from mapper.models.checkpoint import CheckpointError

    try:
        cfg = load_settings(FieldTrainConfig, config_file, world_seed=world_seed, steps=steps, windows=windows,
                            seed=seed)  # fmt: skip
    except (ValueError, OSError) as e:
        raise TrainUsageError(f"training settings: {e}") from e

    def show(rec):
        click.echo(f"step {rec['step']:>6}/{cfg.steps}  loss {rec['loss']:.3f}  val object F1 {rec['f1']:.3f}"
                   f"  boundary F {rec['boundary_f']:.3f}  {rec['seconds']:.0f}s")  # fmt: skip

    try:
        result = train_fields(cfg, out, resume=resume, device=device, progress=show, command=_command_line())
    except (CheckpointError, ValueError, RuntimeError) as e:
        raise TrainUsageError(str(e)) from e
    best = result["best"]
    click.echo(f"best at step {best['step']}: val object F1 {best['f1']:.3f} -> {out}")
    click.echo(f"judge it on another world: mapper fields evaluate RUN --json (a run with fields.model: {out})")
