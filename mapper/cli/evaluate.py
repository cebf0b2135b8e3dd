"""`mapper evaluate`: score a trained model (IQA, segmentation) on held-out labelled blocks."""

from __future__ import annotations

import json
from pathlib import Path

import click


class EvaluateUsageError(click.ClickException):
    """Bad arguments, labels or checkpoints: one clear line, exit 2 like the other user errors of `mapper`."""

    exit_code = 2


def checkpoint_option(default: str):
    return click.option(
        "--checkpoint", default=default, show_default=True,
        help="Checkpoint directory, or the name of a packaged checkpoint.",
    )  # fmt: skip


def labels_option(what: str):
    return click.option(
        "--labels", "labels_roots", multiple=True, required=True,
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help=f"Labelled blocks root{' ' + what if what else ''} (repeatable). Use blocks the model was not trained on.",
    )  # fmt: skip


evaluate = click.Group("evaluate", help="Score trained models on held-out labelled blocks.")


@evaluate.command("iqa", short_help="Coverage-type accuracy of an IQA checkpoint on labelled blocks.")
@checkpoint_option("iqa-default")
@labels_option("with coverage types")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--device", help="torch device (default: cuda when available, else cpu).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Threads reading images.")
def iqa(checkpoint, labels_roots, as_json, device, batch_size, workers):
    """Classify every image of the labelled blocks and compare with their recorded coverage types:
    top-1 accuracy, per-class recall / precision / F1 and the confusion matrix (rows truth, columns predicted).

    Images without any imagery are Nodata without running the network, as in prediction."""
    from mapper.iqa.model import CoverageClassifier
    from mapper.iqa.train import ViewSet, evaluate_views, load_views
    from mapper.labels.store import LabelError
    from mapper.models.checkpoint import CheckpointError, load_checkpoint
    from mapper.models.registry import resolve_checkpoint

    try:
        path = resolve_checkpoint(checkpoint)
        ckpt = load_checkpoint(path, kind="iqa")
        if device:
            ckpt.model.to(device)
        elif _cuda():
            ckpt.model.to("cuda")
        model = CoverageClassifier.from_checkpoint(ckpt)
        data = ViewSet.concat([load_views(r, model.size, workers=workers) for r in labels_roots])
        metrics = evaluate_views(model, data, batch_size)
    except (LabelError, CheckpointError, ValueError) as e:
        raise EvaluateUsageError(str(e)) from e
    trained_on = set(ckpt.meta.get("training", {}).get("world_seeds", []))
    overlap = sorted(trained_on & set(data.world_seeds))
    metrics = {
        **metrics,
        "checkpoint": str(path),
        "labels": [str(p) for p in labels_roots],
        "world_seeds": data.world_seeds,
        "trained_on_world_seeds": sorted(trained_on),
    }
    _warn_if_not_held_out(overlap, "accuracy")
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    click.echo(f"{metrics['n']} images, top-1 accuracy {metrics['top1']:.4f}  ({path})")
    classes = metrics["confusion"]["classes"]
    width = max(len(c) for c in classes) + 2
    click.echo("".ljust(width) + "".join(c[:10].rjust(12) for c in classes) + "      n  recall  precision")
    for c, row in zip(classes, metrics["confusion"]["matrix"], strict=True):
        pc = metrics["per_class"][c]
        rec = "-" if pc["recall"] is None else f"{pc['recall']:.3f}"
        prec = "-" if pc["precision"] is None else f"{pc['precision']:.3f}"
        click.echo(c.ljust(width) + "".join(str(v).rjust(12) for v in row) + f"{pc['n']:>7}  {rec:>6}  {prec:>9}")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@evaluate.command("seg", short_help="Pixel IoU of a segmentation checkpoint on labelled blocks.")
@checkpoint_option("seg-default")
@labels_option("")
@click.option("--max-images", type=click.IntRange(min=1), help="Score a spread sample of N images (block × source).")
@click.option(
    "--coverage", default="Planting,Non-planting", show_default=True,
    help="Coverage types of the images to score (comma-separated; 'all' for every image).",
)  # fmt: skip
@click.option("--overlays", type=click.Path(file_okay=False, path_type=Path), help="Write overlay PNGs here.")
@click.option("--n-overlays", type=click.IntRange(min=0), default=6, show_default=True, help="How many overlays.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--device", help="torch device (default: cuda when available, else cpu).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Windows per batch [default: 8 on CPUs, 32 on GPUs].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def seg(checkpoint, labels_roots, max_images, coverage, overlays, n_overlays, as_json, device, batch_size, quiet):
    """Predict every selected labelled image whole (sliding windows, as in production) and score cropland
    against its mask: pooled pixel IoU, precision, recall, F1, per coverage type and per image.

    Pixels that are unlabelled or without imagery are not scored. Cloudy, snowy and empty images are
    left out by default: IQA routes them away from segmentation."""
    from tqdm import tqdm

    from mapper.labels.store import LabelError
    from mapper.models.checkpoint import CheckpointError
    from mapper.models.registry import resolve_checkpoint
    from mapper.seg.evaluate import evaluate_samples, select_samples, write_overlay
    from mapper.seg.predict import load_segmenter
    from mapper.seg.samples import find_samples

    wanted = None if coverage.strip().lower() == "all" else [c.strip() for c in coverage.split(",") if c.strip()]
    try:
        path = resolve_checkpoint(checkpoint)
        segmenter = load_segmenter(path, device=device, batch_size=batch_size)
        samples = select_samples(find_samples(labels_roots, wanted), max_images)
        bar = tqdm(total=len(samples), desc="images", disable=quiet or as_json)
        written: list[str] = []

        def on_image(row, mosaic, target, result):
            bar.update()
            if overlays is not None and len(written) < n_overlays and row["truth_cropland"] > 0.05:
                iou = "-" if row["iou"] is None else f"{row['iou']:.3f}"
                name = f"{row['block']}_{row['source']}.png"
                title = f"{row['block']} {row['source']} ({row['coverage']}) IoU {iou}"
                written.append(str(write_overlay(overlays / name, mosaic, target, result.probability, title,
                                                 threshold=result.threshold)))  # fmt: skip

        metrics = evaluate_samples(segmenter, samples, on_image)
        bar.close()
    except (LabelError, CheckpointError, ValueError) as e:
        raise EvaluateUsageError(str(e)) from e
    trained_on = set(segmenter.meta.get("training", {}).get("world_seeds", []))
    overlap = sorted(trained_on & set(metrics["world_seeds"]))
    metrics = {
        "checkpoint": str(path),
        "labels": [str(p) for p in labels_roots],
        "trained_on_world_seeds": sorted(trained_on),
        **metrics,
        "overlays": written,
    }
    _warn_if_not_held_out(overlap, "IoU")
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    click.echo(
        f"{metrics['images']} images of {metrics['blocks']} blocks: pixel IoU {metrics['iou']:.4f}, precision "
        f"{metrics['precision']:.3f}, recall {metrics['recall']:.3f} ({metrics['windows_per_second']} windows/s)"
    )
    for cov, m in metrics["by_coverage"].items():
        click.echo(f"  {cov:<14} IoU {m['iou'] if m['iou'] is None else round(m['iou'], 4)}  ({m['pixels']:,} px)")
    for p in written:
        click.echo(f"overlay: {p}")


def _warn_if_not_held_out(seeds: list[int], what: str) -> None:
    if seeds:
        click.echo(
            f"warning: the labels come from world seed(s) {seeds}, which the model was trained on; "
            f"the {what} is not a held-out one",
            err=True,
        )
