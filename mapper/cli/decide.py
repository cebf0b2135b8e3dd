"""`mapper decide`: the block decision models — feature tables, training, held-out judgement."""

from __future__ import annotations

from pathlib import Path

import click

TABLES = ("correctness", "integration")


class DecideUsageError(click.ClickException):
    exit_code = 2


decide = click.Group("decide", help="Block decisions: semantic correctness and source integration (XGBoost).")

labels_option = click.option(
    "--labels", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
    help="Labelled blocks root (`mapper labels make|ingest`).",
)  # fmt: skip
predictions_option = click.option(
    "--predictions", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
    help="Predictions of the labelled images: `mapper segment --mosaic LABELS/*/image_*.tif --out DIR`.",
)  # fmt: skip
tables_option = click.option(
    "--tables", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
    help="Folder with correctness.parquet and integration.parquet (`mapper decide table`).",
)  # fmt: skip


def _read_tables(folder: Path):
    from mapper.decide.table import read_table

    missing = [f"{k}.parquet" for k in TABLES if not (folder / f"{k}.parquet").exists()]
    if missing:
        raise DecideUsageError(f"{folder} lacks {', '.join(missing)}; write them with `mapper decide table`")
    return (read_table(folder / f"{k}.parquet", k) for k in TABLES)


@decide.command("table", short_help="Feature tables and truth-derived labels of labelled blocks.")
@labels_option
@predictions_option
@click.option(
    "--dem", default="world", show_default=True,
    help="'world' (the simulated world's DEM, for world labels), a DEM file (GeoTIFF/VRT), or 'none'.",
)  # fmt: skip
@click.option("--sources", default="a,b", show_default=True, help="The two sources, A then B.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder for the tables.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def table(labels, predictions, dem, sources, out, quiet):
    """Write OUT/correctness.parquet (one row per block × source) and OUT/integration.parquet (one row per
    block): region properties of the predicted masks, IQA class, probabilities and pixel features, terrain,
    the sources' consistency IoU, and the labels derived from the truth (mapper.decide.truth)."""
    from mapper.decide.table import build_tables, write_table

    dem_arg = None if dem.lower() == "none" else dem if dem == "world" else Path(dem)
    pair = tuple(s.strip() for s in sources.split(","))
    correctness, integration = build_tables(labels, predictions, pair, dem=dem_arg, progress=not quiet)
    if not len(correctness):
        raise DecideUsageError(f"no labelled block under {labels} has predictions under {predictions}")
    for name, df in zip(TABLES, (correctness, integration), strict=True):
        write_table(df, out / f"{name}.parquet")
        counts = df["label"].value_counts().to_dict()
        click.echo(f"{name}: {len(df)} rows {counts} -> {out / f'{name}.parquet'}")


@decide.command("train", short_help="Train both models with stratified 80/20 reports.")
@tables_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder for the models.")
@click.option("--seed", type=int, default=0, show_default=True)
def train(tables, out, seed):
    """Train the semantic-correctness model and the integration model (which also takes the correctness
    model's out-of-fold predictions for both sources); each is evaluated on a stratified 20 % of the blocks,
    with its confusion matrix and permutation importance written as PNGs beside it."""
    from mapper.decide.pipeline import train_decision_models

    correctness, integration = _read_tables(tables)
    metrics = train_decision_models(correctness, integration, out, seed)
    for kind in TABLES:
        test = metrics[kind]["test"]
        click.echo(f"{kind}: held-out 20 % accuracy {test['accuracy']:.3f} ({metrics[kind]['split']['test_rows']} "
                   f"rows) -> {out / kind}")  # fmt: skip


@decide.command("evaluate", short_help="Judge both models on other blocks; the integrated map's IoU.")
@click.option("--models", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@tables_option
@labels_option
@predictions_option
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(models, tables, labels, predictions, as_json):
    """Correctness accuracy and integration accuracy on tables of blocks the models were not trained on, and
    the pooled pixel IoU of the integrated map against Only A and Only B on the same blocks."""
    from mapper.decide.pipeline import evaluate_decision_models, to_json

    correctness, integration = _read_tables(tables)
    sources = tuple(correctness.attrs.get("mapper_table", {}).get("sources") or ("a", "b"))
    result = evaluate_decision_models(models, correctness, integration, labels, predictions, sources)
    if as_json:
        click.echo(to_json(result))
        return
    iou = result["pixel_iou"]
    click.echo(f"{result['blocks']} blocks: correctness accuracy {result['correctness']['accuracy']:.3f}, "
               f"integration accuracy {result['integration']['accuracy']:.3f}")  # fmt: skip
    click.echo("pixel IoU: " + ", ".join(f"{k} {v:.4f}" for k, v in iou.items() if v is not None))


@decide.command("apply", short_help="Decide every block of a table: block table and final masks.")
@click.option("--models", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@tables_option
@predictions_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def apply(models, tables, predictions, out):
    """Write OUT/blocks.parquet (one row per block: all features, both sources' predicted correctness with
    probabilities, the integration decision with probabilities) and OUT/masks/<block>.tif, the final
    cropland mask under each decision (Merge = union)."""
    from mapper.decide.pipeline import block_decisions, write_final_masks
    from mapper.store.geoparquet import write_geoparquet

    correctness, integration = _read_tables(tables)
    sources = tuple(correctness.attrs.get("mapper_table", {}).get("sources") or ("a", "b"))
    decisions = block_decisions(models, correctness, integration, sources)
    out.mkdir(parents=True, exist_ok=True)
    write_geoparquet(decisions, out / "blocks.parquet")
    masks = write_final_masks(decisions, predictions, out / "masks", sources)
    counts = decisions["decision"].value_counts().to_dict()
    click.echo(f"{len(decisions)} blocks decided {counts} -> {out / 'blocks.parquet'}, {len(masks)} masks")
