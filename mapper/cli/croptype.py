"""`mapper croptype`: crop types inside the cropland map from Sentinel-2 time series (CropNet with
hierarchical heads) — parcel datasets of the simulated world, training, held-out evaluation, the crop-type
stage of a run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mapper.cli.options import RegistryChoice, world_seed_option


class CropTypeUsageError(click.ClickException):
    exit_code = 2


@click.group("croptype", short_help="Crop types from Sentinel-2: simulate, train, evaluate, map a run.")
def croptype() -> None:
    """Crop types of the mapped fields from Sentinel-2 L2A time series.

    Parcels are fields of the cropland map (on the simulated world: its truth fields); a parcel's series is
    the mean of its pure 10 m pixels, composited onto 43 five-day steps (days 121-331). The model is CropNet
    (joint spectral-temporal convolutions) with one head per taxonomy level, each conditioned on the level
    above; every prediction is a valid path through the taxonomy."""


def _world(world_seed: int | None):
    from mapper.world.world import get_world

    return get_world(0 if world_seed is None else world_seed)


@croptype.command("simulate", short_help="Write a parcel dataset (series + crops) of the simulated world.")
@click.option("--province", "-p", required=True, help="Where the parcels are sampled (any province name).")
@click.option(
    "--windows",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Sampled windows (each in a different block wholly inside the province).",
)
@click.option("--window-km", type=click.FloatRange(0.2, 5.5), default=2.0, show_default=True, help="Window side.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the window sample.")
@click.option(
    "--unit",
    type=click.Choice(["parcel", "pixel"]),
    default="parcel",
    show_default=True,
    help="parcel: each truth field's mean over its pure pixels; pixel: single pure pixels, unaveraged.",
)
@click.option(
    "--max-pixels-per-window",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="With --unit pixel: pixels drawn at random (seeded by --seed) from each window.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Dataset directory.")
@world_seed_option
def simulate(province, windows, window_km, seed, unit, max_pixels_per_window, out, world_seed):
    """Sample windows of a province of the world, composite its Sentinel-2 acquisitions (clouds masked by
    SCL) and write the truth fields' parcel series (or, with --unit pixel, single pure pixels' series) with
    this year's and last year's crop."""
    from mapper.croptype.dataset import save_dataset, simulate_dataset

    ds = simulate_dataset(_world(world_seed), province, windows, window_km, seed, log=lambda m: click.echo(m, err=True),
                          unit=unit, max_pixels_per_window=max_pixels_per_window)  # fmt: skip
    save_dataset(ds, out)
    counts = ds.parcels["code"].value_counts()
    click.echo(f"{len(ds)} {unit}s of {counts.size} crops from {windows} windows -> {out}")


@croptype.command("export-s2", short_help="Write the world's Sentinel-2 over a box as per-date GeoTIFFs.")
@click.option("--bbox", required=True, help="west,south,east,north in degrees (at most one block, 0.05°, a side).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder for the files.")
@world_seed_option
def export_s2(bbox, out, world_seed):
    """What a user downloads: one L2A-like GeoTIFF per date (B2…B12 then SCL, uint16, the date in the
    ACQUISITION_DATE tag) on the UTM 10 m grid of the box's zone; `mapper croptype` reads these as it
    reads real files."""
    from mapper.croptype.s2write import write_dates
    from mapper.world.sentinel2 import simulate_block

    try:
        west, south, east, north = (float(v) for v in bbox.split(","))
    except ValueError:
        raise CropTypeUsageError(f"--bbox {bbox!r}: give west,south,east,north in degrees") from None
    if not (west < east and south < north) or east - west > 0.05 + 1e-9 or north - south > 0.05 + 1e-9:
        raise CropTypeUsageError(f"--bbox {bbox}: need west < east, south < north and sides of at most 0.05°")
    sim = simulate_block(_world(world_seed), (west, south, east, north))
    paths = write_dates(out, sim.data, sim.scl, sim.bands, sim.dates, sim.crs, sim.transform)
    click.echo(f"{len(paths)} dates ({sim.dates[0]} … {sim.dates[-1]}), {sim.data.shape[3]} × {sim.data.shape[2]} "
               f"px, {sim.crs.to_string()} -> {out}")  # fmt: skip


@croptype.command("export", short_help="Write the world's samples in a public dataset layout (CCD or H2Crop).")
@click.option("--format", "fmt", type=click.Choice(["ccd", "h2crop"]), required=True,
              help="ccd: the Canadian Cropland Dataset's PNG tree and per-point monthly GeoTIFF zips; h2crop: "
                   "H2Crop's per-sample HDF5 with data_lists/.")  # fmt: skip
@click.option("--province", "-p", required=True, help="Where the windows are sampled (any province name).")
@click.option("--windows", type=click.IntRange(min=1), default=30, show_default=True, help="Sampled windows.")
@click.option("--window-km", type=click.FloatRange(0.7, 5.5),
              help="Window side (default: 2 for ccd, 1.92 — H2Crop's 192 px — for h2crop).")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the window sample.")
@click.option("--months", default="6-10", show_default=True, help="ccd: the months written (CCD has June-October).")
@click.option("--types", default="RGB,NDVI", show_default=True,
              help="ccd: PNG image types (RGB, NDVI, NDVI45, GNDVI, OSAVI, PSRI, NDWI).")  # fmt: skip
@click.option("--no-tif", is_flag=True, help="ccd: PNGs only, without the GeoTIFF zips.")
@click.option("--max-points", type=click.IntRange(min=1), default=50, show_default=True,
              help="ccd: points (fields) per window.")  # fmt: skip
@click.option("--max-pixels", type=click.IntRange(min=1), default=2000, show_default=True,
              help="h2crop: the pixels per sample the --native-out dataset holds (as `train --max-pixels` reads).")
@click.option("--native-out", type=click.Path(file_okay=False, path_type=Path),
              help="Also write the native dataset (43 five-day steps) of exactly the exported samples.")
@click.option("--with-hyper", is_flag=True,
              help="h2crop: also EnMAP_data (218, H/3, W/3), July's S2 interpolated across EnMAP's band centres "
                   "(no information beyond S2), so the public *_H_* configs load the tree.")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Dataset folder.")
@world_seed_option
def export(fmt, province, windows, window_km, seed, months, types, no_tif, max_points, max_pixels, native_out,
           with_hyper, out, world_seed):  # fmt: skip
    """The simulated world's fields in a public dataset's layout, so that training on it runs the path a
    user with the real downloaded dataset runs (`train --format`)."""
    from mapper.croptype.dataset import save_dataset
    from mapper.croptype.formats.months import parse_months

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    if fmt == "ccd":
        from mapper.croptype.formats.ccdwrite import export_ccd

        try:
            month_list = parse_months(months)
        except ValueError as e:
            raise CropTypeUsageError(f"--months: {e}") from None
        kinds = tuple(t.strip().upper() for t in types.split(",") if t.strip())
        try:
            native, _ = export_ccd(_world(world_seed), province, out, windows, window_km or 2.0, seed, month_list,
                                   kinds, not no_tif, max_points, log=log)  # fmt: skip
        except ValueError as e:
            raise CropTypeUsageError(str(e)) from None
    else:
        from mapper.croptype.formats.h2cropwrite import export_h2crop

        native, _ = export_h2crop(_world(world_seed), province, out, windows, window_km or 1.92, seed, max_pixels,
                                  log=log, with_hyper=with_hyper)  # fmt: skip
    if native_out:
        save_dataset(native, native_out)
    splits = native.parcels["split"].value_counts().to_dict()
    click.echo(f"{fmt}: {len(native)} samples ({', '.join(f'{k} {v}' for k, v in sorted(splits.items()))}) -> {out}")


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def _datasets(paths, fmt: str = "native", taxonomy=None, ids=None, split=None, **options):
    """The datasets at `paths` in `fmt`, joined; `split` keeps only those rows of a format's splits."""
    from mapper.croptype.dataset import DatasetError, concat
    from mapper.croptype.formats import read_format

    sets = [read_format(p, fmt, taxonomy, ids, **options) for p in paths]
    ds = sets[0] if len(sets) == 1 else concat(sets)
    if split and split != "all" and not (fmt == "table" and "split" not in ds.parcels):  # a table without splits
        if "split" not in ds.parcels:
            raise CropTypeUsageError(f"--split {split}: native datasets have no splits; pass --format")
        ds = ds.subset((ds.parcels["split"] == split).to_numpy())
        if not len(ds):
            raise DatasetError(f"{', '.join(map(str, paths))}: the {split} split is empty")
    return ds


def _format_options(fmt: str, source: str, max_pixels: int, unit: str, table: dict | None = None) -> dict:
    if fmt == "ccd":
        return {"source": source}
    if fmt == "h2crop":
        return {"max_pixels": max_pixels, "unit": unit}
    if fmt == "table":
        return _table_options(**(table or {}))
    return {}


def _table_options(label_column="label", id_column="id", time_column=None, split_column="split", bands=None,
                   step_days=5.0) -> dict:  # fmt: skip
    """read_table's keywords from the table options (--bands as a comma list)."""
    picked = tuple(b.strip() for b in bands.split(",") if b.strip()) if bands else None
    return {"label_column": label_column, "id_column": id_column, "time_column": time_column,
            "split_column": split_column, "bands": picked, "step_days": step_days}  # fmt: skip


def table_options(f):
    """How to read a --format table (CSV or Parquet; mapper.croptype.formats.table)."""
    options = [
        click.option("--label-column", default="label", show_default=True, help="table: the class of each sample."),
        click.option("--id-column", default="id", show_default=True,
                     help="table: the sample id (long tables; wide ones without it use the row number)."),
        click.option("--time-column", help="table, long layout: the date or step column (default: date, else step)."),
        click.option("--split-column", default="split", show_default=True,
                     help="table: train / val / test per sample, when present (else a seeded share of ids)."),
        click.option("--bands", "bands", help="table: the bands to use, e.g. NDVI or B02,B03 (default: all)."),
        click.option("--step-days", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
                     help="table: days between integer steps (NDVI_00, NDVI_01, …); the time augmentations shift "
                          "in days."),
    ]  # fmt: skip
    for opt in reversed(options):
        f = opt(f)
    return f


def format_options(f):
    """--format, --taxonomy and the readers' options, shared by train and evaluate."""
    options = [
        click.option("--format", "fmt", type=click.Choice(["native", "ccd", "h2crop", "table"]), default="native",
                     show_default=True, help="native: `simulate`'s datasets; ccd / h2crop: the public layouts "
                     "(their own splits are used); table: a CSV or Parquet of labelled series (wide or long)."),
        click.option("--taxonomy", "taxonomy_csv", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     help="Taxonomy CSV (mapper's columns, H2Crop's cascade_labels.csv, or a class list: label, "
                          "optional cropped); default: the packaged."),
        click.option("--source", type=click.Choice(["auto", "tif", "png"]), default="auto", show_default=True,
                     help="ccd: the GeoTIFF zips' ten bands or the PNG types (auto: tif when present)."),
        click.option("--max-pixels", type=click.IntRange(min=1), default=2000, show_default=True,
                     help="h2crop: labelled pixels drawn per sample file (seeded)."),
        click.option("--unit", "read_unit", type=click.Choice(["pixel", "parcel"]), default="pixel",
                     show_default=True, help="h2crop: single pixels, or each 4-connected group of one crop."),
    ]  # fmt: skip
    for opt in reversed(options):
        f = opt(f)
    return table_options(f)


DATASET = click.Path(exists=True, path_type=Path)  # a dataset folder, or a table file with --format table


def _taxonomy(path):
    from mapper.croptype.formats import load_taxonomy

    return load_taxonomy(path)


@croptype.command("train", short_help="Train CropNet (or the random-forest baseline) on parcel datasets.")
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    type=DATASET,
    help="A parcel dataset (`mapper croptype simulate`), a CCD / H2Crop folder or a table with --format; "
    "repeatable.",
)
@format_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Model directory.")
@click.option("--model", "kind", type=RegistryChoice("mapper.croptype.kinds:kind_names"), default="cropnet",
              show_default=True, help="The kind of model (mapper.croptype.kinds).")
@click.option(
    "--width",
    type=click.IntRange(min=4),
    default=32,
    show_default=True,
    help="CropNet channels (the paper's 128 on a GPU; 32 trains on two CPU cores in minutes).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=40, show_default=True)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Adam learning rate (CropNet's 1e-4 needs more epochs).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--no-augment", is_flag=True, help="Train without the time shift, time scaling and magnitude warp.")
@click.option("--shift-days", type=click.FloatRange(min=0), default=50.0, show_default=True)
@click.option("--variant", type=click.Choice(["published", "mapper"]), default="published", show_default=True,
              help="CropNet's recipe. published: x-ytong/CropNet's dropout 0.2/0.3/0.3/0.4 by block, Kaiming "
                   "initialisation, per epoch the originals plus two augmented copies (shift p 1, scaling p 0.5, "
                   "warp p 0.25); mapper: dropout 0.2, PyTorch's initialisation, every augmentation on every "
                   "sample (better on UCR Crop with --no-augment; the packaged croptype-default's).")  # fmt: skip
@click.option("--window", "window_text",
              help="FIRST,LAST: the days the model takes of longer series (e.g. 121,331); the time augmentations "
                   "then read real observations outside them (default: the whole series).")  # fmt: skip
@click.option("--prior", is_flag=True, help="Feed last year's crop to the heads (H2Crop's prior).")
@click.option("--trees", type=click.IntRange(min=1), default=500, show_default=True, help="Trees of --model forest.")
@click.option(
    "--val-share",
    type=click.FloatRange(0.05, 0.5),
    default=0.2,
    show_default=True,
    help="Share of the windows held out for validation (whole windows).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def train(data, fmt, taxonomy_csv, source, max_pixels, read_unit, out, kind, width, epochs, lr, batch_size, patience,
          no_augment, shift_days, variant, window_text, prior, trees, val_share, seed, device, **table):  # fmt: skip
    """Train on the datasets' parcels, holding out whole windows for validation (early stopping on them); with
    --format, on the dataset's training split, early stopping on its validation split (a table without a split
    column: --val-share of each class's ids, drawn with --seed)."""
    import shlex
    import sys

    from mapper.config.loader import load_settings
    from mapper.croptype.fit import train_model
    from mapper.croptype.train import CropTrainConfig, variant_settings

    cfg = load_settings(
        CropTrainConfig, what="crop-type training settings", width=width, epochs=epochs, lr=lr, batch_size=batch_size,
        patience=patience, augment=not no_augment, shift_days=shift_days, seed=seed, device=device, prior=prior,
        window=_window(window_text), **variant_settings(variant),
    )  # fmt: skip
    command = "mapper " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    taxonomy, ids = _taxonomy(taxonomy_csv)
    ds = _datasets(data, fmt, taxonomy, ids, **_format_options(fmt, source, max_pixels, read_unit, table))
    if fmt == "table":
        from mapper.croptype.formats.tablesplit import assign_split, check_split_classes

        ds = assign_split(ds, val_share, seed)
        check_split_classes(ds, taxonomy)
    if fmt != "native":
        ds = ds.subset((ds.parcels["split"] != "test").to_numpy())  # the test split stays for `evaluate`
    info = train_model(ds, out, kind, cfg, val_share, taxonomy=taxonomy, n_trees=trees, command=command,
                       log=lambda m: click.echo(m, err=True))  # fmt: skip
    m = info["val_metrics"]
    click.echo(f"{kind} -> {out}: validation ({info['n_val']} samples, {info['validation']}) OA per level "
               + " / ".join(f"{m[f'level{i}']['overall_accuracy']:.3f}" for i in range(1, 5)))  # fmt: skip


@croptype.command("evaluate", short_help="Per-level metrics of a model on a parcel dataset it was not trained on.")
@click.option(
    "--model",
    "model_path",
    default="croptype-default",
    show_default=True,
    help="A model directory or a packaged model name.",
)
@click.option(
    "--data",
    "data",
    multiple=True,
    type=DATASET,
    help="Parcel dataset(s), or CCD / H2Crop folders with --format; default: simulate --province on --world-seed.",
)
@format_options
@click.option("--split", type=click.Choice(["test", "val", "train", "all"]), default="test", show_default=True,
              help="With --format: which of the dataset's splits to judge (a table without splits: all rows).")
@click.option("--province", "-p", default="Henan", show_default=True, help="Without --data: where to sample.")
@click.option("--windows", type=click.IntRange(min=1), default=10, show_default=True, help="Without --data.")
@click.option("--figures", type=click.Path(file_okay=False, path_type=Path), help="Folder for confusion PNGs.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@world_seed_option
def evaluate(model_path, data, fmt, taxonomy_csv, source, max_pixels, read_unit, split, province, windows, figures,
             as_json, world_seed, **table):  # fmt: skip
    """OA, macro-F1 over the classes present and the confusion matrix at each taxonomy level, and the share of
    the heads' own predictions that form a valid path. Without --data, parcels of --province on --world-seed
    (default 1: the packaged model learnt on seed 0 only) are simulated first."""
    from mapper.croptype.dataset import simulate_dataset
    from mapper.croptype.fit import evaluate_model
    from mapper.croptype.kinds import load_model
    from mapper.models.registry import resolve_checkpoint

    taxonomy, ids = _taxonomy(taxonomy_csv)
    model = load_model(resolve_checkpoint(model_path), taxonomy=taxonomy)
    if data:
        options = _format_options(fmt, source, max_pixels, read_unit, table)
        if fmt == "table":
            options["expect"] = (model.bands, model.steps)  # a table lacking them: an error naming the columns
        ds = _datasets(data, fmt, taxonomy, ids, split=split if fmt != "native" else None, **options)
        part = "all rows" if fmt == "table" and "split" not in ds.parcels else f"{split} split"
        where = ", ".join(str(d) for d in data) + (f" ({fmt}, {part})" if fmt != "native" else "")
    else:
        seed = 1 if world_seed is None else world_seed
        ds = simulate_dataset(_world(seed), province, windows, seed=100 + seed)
        where = f"{province} on world seed {seed} ({windows} windows)"
    metrics = evaluate_model(model, ds, taxonomy=taxonomy, figures=figures, title=Path(model_path).name)
    metrics["model"] = str(model_path)
    metrics["data"] = where
    if as_json:
        echo_json(metrics)
        return
    click.echo(f"{model_path} on {where}: {metrics['n_parcels']} parcels")
    flat = _flat(taxonomy)  # a class list: its four levels are the same classes
    for i in (4,) if flat else range(1, 5):
        lv = metrics[f"level{i}"]
        click.echo(f"  {'classes' if flat else f'level {i}'}: OA {lv['overall_accuracy']:.3f}  macro-F1 "
                   f"{lv['macro_f1']:.3f}  ({len(lv['classes_present'])} classes present)")  # fmt: skip
    if "crop_accuracy" in metrics:
        c = metrics["crop_accuracy"]
        click.echo(f"  accuracy over the crop classes (taxonomy's cropped): {c['accuracy']:.3f} of {c['n']} samples")
    if "raw_consistency" in metrics and not flat:
        click.echo(f"  heads' own predictions forming a valid path: {metrics['raw_consistency']:.3f}")


def _window(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        first, last = (float(v) for v in text.split(","))
    except ValueError:
        raise CropTypeUsageError(f"--window {text!r}: give FIRST,LAST days, e.g. 121,331") from None
    if not first < last:
        raise CropTypeUsageError(f"--window {text}: the first day must come before the last")
    return first, last


def _flat(taxonomy) -> bool:
    from mapper.croptype.taxonomy import is_flat

    return is_flat(taxonomy)


@croptype.command("predict", short_help="Crop types of a table's series, written back as a table.")
@click.option("--model", "model_path", required=True, help="A model directory or a packaged model name.")
@click.option("--data", "table_path", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The table (CSV or Parquet, wide or long) of series to classify; labels are not needed.")
@click.option("--format", "fmt", type=click.Choice(["table"]), default="table", show_default=True,
              help="The input's layout (tables only).")
@table_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The table written back (.csv or .parquet) with predicted_class, predicted_path, "
                   "predicted_probability.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def predict(model_path, table_path, fmt, out, device, **table):
    """Classify every sample of a table with a trained model: the table must hold the model's bands at its steps
    (an error names the missing columns); each sample gets its predicted class, its level path and the path's
    probability. A long table gets its sample's prediction on each of its rows."""
    from collections import Counter

    from mapper.croptype.fit import predict_dataset
    from mapper.croptype.formats.table import read_table
    from mapper.croptype.formats.tablewrite import write_predictions
    from mapper.croptype.kinds import load_model
    from mapper.models.registry import resolve_checkpoint

    model = load_model(resolve_checkpoint(model_path))
    model.to(None if device == "auto" else device)
    ds = read_table(table_path, model.taxonomy, labelled=False, expect=(model.bands, model.steps),
                    **_table_options(**table))  # fmt: skip
    pred = predict_dataset(model, ds, model.taxonomy)
    write_predictions(table_path, ds, pred, model.taxonomy, out)
    counts = Counter(model.taxonomy.leaf_names()[i] for i in pred["leaf"]).most_common()
    click.echo(f"{len(ds)} samples of {table_path} -> {out}: " + ", ".join(f"{n} {c}" for c, n in counts[:8])
               + (" …" if len(counts) > 8 else ""))  # fmt: skip


@croptype.command("map", short_help="Crop types of a finished `mapper run` (a resumable stage of the run).")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--model", "model_path", help="Crop-type model (default: the config's croptype.model, croptype-default).")
@click.option(
    "--s2",
    "s2_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Sentinel-2 L2A files or folders (repeatable); default: the simulated world's.",
)
@click.option("--bands", help="Layer names of files that do not name their bands, e.g. B2,B3,B4,B8.")
@click.option(
    "--dates-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="One YYYY-MM-DD per line, for files without dates.",
)
@click.option("--in-process", is_flag=True, help="Run in this process, without Ray.")
@click.option("--address", help="A Ray cluster (host:port).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--retry-failed", is_flag=True, help="Give blocks whose crop types failed their attempts again.")
@click.option("--unit", type=click.Choice(["parcel", "pixel", "field"]),
              help="Classify every field pixel (the config's default, pixel), each field delineated at 10 m from "
                   "the series (parcel), or each 2 m field of the run's fields stage (field: run `mapper fields "
                   "RUN` first).")
def map_run(run_dir, model_path, s2_paths, bands, dates_file, in_process, address, quiet, retry_failed, unit):
    """Add crop types to a run: per block, the Sentinel-2 series of its field polygons (pure 10 m pixels of
    the final cropland map) are classified, and RUN_DIR/croptype/ gets the crop-type maps (10 m GeoTIFFs,
    a VRT per UTM zone with a QGIS style), the field polygons per prefecture with their crops, and crop areas
    per province and prefecture. Blocks already done are skipped: after an interruption, run it again."""
    from mapper.cli.run import _executor_factory, _resume_request
    from mapper.run.session import run as run_session

    overrides = {"croptype.enabled": True}
    if unit:
        overrides["croptype.unit"] = unit
    if model_path:
        overrides["croptype.model"] = model_path
    if s2_paths:
        overrides.update({"croptype.s2.kind": "files", "croptype.s2.paths": [str(p) for p in s2_paths]})
    if bands:
        overrides["croptype.s2.bands"] = [b.strip() for b in bands.split(",") if b.strip()]
    if dates_file:
        overrides["croptype.s2.dates_file"] = str(dates_file)
    req = _resume_request(run_dir, None, None, None, "demo", None, (), None, overrides=overrides)
    req.quiet, req.retry_failed = quiet, retry_failed
    _preflight(req.config, run_dir)
    summary = run_session(req, _executor_factory(in_process, address, False))
    outputs = summary.get("outputs", {}).get("croptype", {})
    if not outputs:
        raise CropTypeUsageError(f"no block of {run_dir} got crop types (see {run_dir / 'run.log'})")
    click.echo(f"crop types of {summary.get('finished', 0)} blocks -> {run_dir / 'croptype'}")
    for key in ("areas_provinces", "maps", "polygons", "blocks_png", "fields"):
        value = outputs.get(key)
        shown = ", ".join(value[:3]) + (" …" if len(value) > 3 else "") if isinstance(value, list) else value
        click.echo(f"  {key}: {shown}")
    if summary.get("failed"):
        raise SystemExit(1)


def _preflight(config, run_dir: Path | None = None) -> None:
    """Before any block: the model loads (checksums, taxonomy), the Sentinel-2 files' headers agree with
    each other and hold the bands the model needs, and with unit field the run has fields (or makes them)."""
    from mapper.croptype.fieldunit import fields_missing_message
    from mapper.croptype.kinds import load_model
    from mapper.croptype.s2read import require_bands
    from mapper.croptype.stage import S2Provider
    from mapper.models.registry import resolve_checkpoint

    if run_dir is not None and config.croptype.unit == "field":
        problem = fields_missing_message(run_dir, config.model_dump(mode="json"))
        if problem:
            raise CropTypeUsageError(problem)
    model = load_model(resolve_checkpoint(config.croptype.model))
    s2 = config.croptype.s2.model_dump(mode="json")
    if s2["kind"] == "files":
        provider = S2Provider(s2, config.world.seed)
        require_bands(provider.bands, model.bands)


@croptype.command("statistics", short_help="The simulated world's true crop areas of a province (no rendering).")
@click.option("--province", "-p", required=True, help="Any province name.")
@click.option("--samples", type=click.IntRange(min=2), default=20, show_default=True,
              help="Sample points per block side (40: the run's own cropland statistic; ~1 min for a province).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@world_seed_option
def statistics(province, samples, as_json, world_seed):
    """Area (ha) of every crop, and its harvested area (× cropping intensity: double rice, wheat then
    maize in the warm north, several vegetable crops in the south), integrated over the province polygon on a
    regular sample grid with each sample's exact ellipsoidal area — what the world's statistics office
    would publish."""
    from mapper.croptype.taxonomy import packaged_taxonomy
    from mapper.grid.admin import resolve_province
    from mapper.world.truth import crop_area_in_polygon

    unit = resolve_province(province)
    areas = crop_area_in_polygon(_world(world_seed), unit.geometry, samples_per_block_side=samples)
    tax = packaged_taxonomy()
    rows = [{"code": c, "crop": tax.leaf_names()[tax.leaf_index(c)], **v} for c, v in sorted(areas.items())]
    if as_json:
        echo_json({"province": unit.name, "world_seed": 0 if world_seed is None else world_seed, "crops": rows})
        return
    click.echo(f"{unit.name}, world seed {0 if world_seed is None else world_seed}: crop area (ha)")
    for r in sorted(rows, key=lambda r: -r["ha"]):
        click.echo(f"  {r['crop']:<18} {r['ha']:>14,.0f}   harvested {r['harvested_ha']:>14,.0f}")
