"""`mapper evaluate`: score a trained model on held-out labelled blocks (IQA now; segmentation later)."""

from __future__ import annotations

import json
from pathlib import Path

import click


class EvaluateUsageError(click.ClickException):
    """Bad arguments, labels or checkpoints: one clear line, exit 2 like the other user errors of `mapper`."""

    exit_code = 2


evaluate = click.Group("evaluate", help="Score trained models on held-out labelled blocks.")


@evaluate.command("iqa", short_help="Coverage-type accuracy of an IQA checkpoint on labelled blocks.")
@click.option(
    "--checkpoint", default="iqa-default", show_default=True,
    help="Checkpoint directory, or the name of a packaged checkpoint.",
)  # fmt: skip
@click.option(
    "--labels", "labels_roots", multiple=True, required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Labelled blocks root with coverage types (repeatable). Use blocks the model was not trained on.",
)  # fmt: skip
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
    if overlap:
        click.echo(
            f"warning: the labels come from world seed(s) {overlap}, which the model was trained on; "
            "the accuracy is not a held-out one",
            err=True,
        )
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
