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


train = click.Group("train", help="Train models (IQA coverage types) on labelled blocks.")


@train.command("iqa", short_help="Train the coverage-type classifier (ResNet) on labelled blocks.")
@click.option(
    "--labels", "labels_roots", multiple=True, required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Labelled blocks root (`mapper labels make|ingest`); repeatable to combine several.",
)  # fmt: skip
@click.option(
    "--val-labels", type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Labelled blocks to validate on each epoch (default: a held-out share of the --labels blocks).",
)  # fmt: skip
@click.option("--arch", help="Architecture from configs/models.yaml [default: iqa-resnet18-tiny].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Checkpoint directory.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs [default: 80].")
@click.option("--resume", is_flag=True, help="Continue the unfinished run at --out after its last epoch.")
@click.option(
    "--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML of training settings (keys of IQATrainConfig, e.g. configs/train_iqa_default.yaml).",
)  # fmt: skip
@click.option("--batch-size", type=click.IntRange(min=2), help="Batch size [default: 32].")
@click.option("--lr", type=float, help="Peak learning rate [default: 2e-3].")
@click.option("--seed", type=int, help="Seeds initialisation, split, sampling and augmentation [default: 0].")
@click.option("--device", help="torch device (default: cuda when available, else cpu).")
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
