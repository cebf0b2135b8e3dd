"""`mapper fields`: field boundaries of a finished run (a resumable stage of the run) and their scores on the
simulated world."""

from __future__ import annotations

import json
from pathlib import Path

import click


class FieldsUsageError(click.ClickException):
    exit_code = 2


class _RunDirGroup(click.Group):
    """A group whose first argument may be a run directory: `mapper fields RUN` is `mapper fields map RUN`."""

    default_command = "map"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group("fields", cls=_RunDirGroup, short_help="Field boundaries of a run: polygons per field (fiboa), scores.")
def fields() -> None:
    """Field boundaries at 2 m inside a run's cropland map.

    \b
    mapper fields RUN_DIR [--model M] [--min-area-ha A]   fields of a finished run (same as `fields map`)
    mapper fields evaluate RUN_DIR [--json]               their scores against the simulated world's fields

    Per block, fields are delineated on the imagery of the source its final mask came from, inside that mask
    (RUN_DIR/fields/blocks/); then every field is stitched across block edges into one polygon:
    RUN_DIR/fields/fields.parquet (fiboa 0.3 GeoParquet) and one GeoPackage per prefecture."""


@fields.command("map", short_help="Fields of a finished `mapper run` (resumable; `mapper fields RUN_DIR`).")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--model", "model", help="Field model: a checkpoint directory, a packaged model name or `baseline` "
              "(the classical delineator). Default: the model of the blocks already done, else the config's "
              "fields.model (fields-default).")  # fmt: skip
@click.option(
    "--min-area-ha",
    type=click.FloatRange(min=0, min_open=True),
    help="Fields smaller than this are slivers, left out (default: as last time, else 0.02).",
)
@click.option("--in-process", is_flag=True, help="Run in this process, without Ray.")
@click.option("--address", help="A Ray cluster (host:port).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--retry-failed", is_flag=True, help="Give blocks whose fields failed their attempts again.")
@click.option("--redo", is_flag=True, help="Delineate every block again (e.g. with another --model).")
def map_run(run_dir, model, min_area_ha, in_process, address, quiet, retry_failed, redo):
    """Add field boundaries to a run: per block, field instances inside its final cropland mask
    (RUN_DIR/fields/blocks/<block>.tif and .parquet), then the fields stitched over block edges, slivers
    removed, simplified: RUN_DIR/fields/fields.parquet (fiboa) and RUN_DIR/fields/<prefecture>.gpkg. Blocks
    already done are skipped: after an interruption, run it again. The model is checked before any block."""
    from mapper.cli.run import _executor_factory, _resume_request
    from mapper.run.session import run as run_session

    done = _done_fields(run_dir)
    model = model or _single(done, "model")
    overrides = {"fields.enabled": True}
    if model:
        overrides["fields.model"] = model
    min_area_ha = min_area_ha or _previous_min_area(run_dir)
    if min_area_ha:
        overrides["fields.min_area_ha"] = min_area_ha
    req = _resume_request(run_dir, None, None, None, "demo", None, (), None, overrides=overrides)
    req.quiet, req.retry_failed = quiet, retry_failed
    _preflight(run_dir, req.config, done, redo)
    if redo:
        req.on_planned = _forget_fields
    summary = run_session(req, _executor_factory(in_process, address, False))
    outputs = summary.get("outputs", {}).get("fields", {})
    if not outputs:
        raise FieldsUsageError(f"no block of {run_dir} got fields (see {run_dir / 'run.log'})")
    info = json.loads(Path(outputs["summary"]).read_text(encoding="utf-8"))
    click.echo(f"{info['fields']:,} fields ({info['area_ha']:,.1f} ha) from {info['pieces']:,} pieces in "
               f"{info['blocks']} blocks, model {info['model']} -> {run_dir / 'fields'}")  # fmt: skip
    click.echo(f"  fields: {outputs['fields']}")
    gpkgs = outputs.get("geopackages", [])
    click.echo(f"  geopackages: {', '.join(Path(p).name for p in gpkgs[:3])}{' …' if len(gpkgs) > 3 else ''}")
    failed = sorted({f["block_id"] for f in summary.get("failures", []) if f.get("stage") == "fields"})
    if failed:
        click.echo(f"  {len(failed)} block(s) failed ({', '.join(failed[:5])}{' …' if len(failed) > 5 else ''}): "
                   f"see {run_dir / 'run.log'}; `mapper fields {run_dir} --retry-failed` tries them again")  # fmt: skip
    if summary.get("failed"):
        raise SystemExit(1)


def _done_fields(run_dir: Path) -> dict:
    """{block: result} of the run's done field blocks; refused (naming `mapper run`) without final masks."""
    from mapper.store.run_store import RunStore

    store = RunStore.read_only(run_dir)
    try:
        finals = [b for b, _ in store.results("final") if store.layout.final(b).exists()]
        done = dict(store.results("fields"))
    finally:
        store.close()
    if not finals:
        raise FieldsUsageError(f"{run_dir} has no final cropland masks (final/<block>.tif) to delineate fields in; "
                               f"make them first with `mapper run --resume {run_dir}` (or a new `mapper run "
                               "--province P --out DIR`), then `mapper fields DIR`")  # fmt: skip
    return done


def _single(done: dict, key: str):
    values = {r.get(key) for r in done.values()} - {None}
    return values.pop() if len(values) == 1 else None


def _previous_min_area(run_dir: Path) -> float | None:
    from mapper.fields.outputs import SUMMARY
    from mapper.fields.paths import fields_dir

    try:
        return float(json.loads((fields_dir(run_dir) / SUMMARY).read_text(encoding="utf-8"))["min_area_ha"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _preflight(run_dir: Path, config, done: dict, redo: bool) -> None:
    """Before any block: the field model loads (checksums, kind, arch), and blocks already done were made with
    it (a run's fields come from one model, unless --redo)."""
    from mapper.fields.model import BASELINE, load_field_model
    from mapper.models.checkpoint import CheckpointError

    cfg = config.fields
    try:
        load_field_model(cfg.model, cfg.device)
    except CheckpointError as e:
        raise CheckpointError(f"field model: {e} (or delineate without one: --model {BASELINE})") from None
    others = sorted({str(r.get("model")) for r in done.values()} - {cfg.model})
    if others and not redo:
        n = sum(str(r.get("model")) != cfg.model for r in done.values())
        raise FieldsUsageError(f"the fields of {n} block(s) of {run_dir} were made with model {', '.join(others)}, "
                               f"not {cfg.model}; give --model {others[0]} to go on with it, or --redo to delineate "
                               f"every block again with {cfg.model}")  # fmt: skip


def _forget_fields(store) -> None:
    """--redo: the fields stage's records dropped (inside the run's lock, before any work), so every block is
    delineated again; its files are overwritten as blocks are redone."""
    with store.transaction():
        store.conn.execute("DELETE FROM tasks WHERE stage = 'fields'")


@fields.command("evaluate", short_help="Scores of a world run's fields against the simulated world's fields.")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--min-pixels", type=click.IntRange(min=0), default=40, show_default=True,
              help="Instances smaller than this (true and predicted) are left out: fragments no delineation can "
                   "support (40 px ≈ the 0.02 ha sliver limit in southern China).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def evaluate(run_dir, min_pixels, as_json):
    """Object precision / recall / F1 (a predicted field matches a true one at IoU > 0.5), extent IoU, boundary
    F (within 1 px) and the median relative area error of matched fields, pooled over the run's blocks with
    fields, on the pixels its final masks have imagery for. Only runs of the simulated world have field truth.
    Also writes RUN_DIR/fields/evaluation.json."""
    from mapper.fields.outputs import FieldsEvaluationError, evaluate_run

    try:
        out = evaluate_run(run_dir, min_pixels=min_pixels)
    except FieldsEvaluationError as e:
        raise FieldsUsageError(str(e)) from None
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    click.echo(f"{run_dir}: {out['fields']:,} fields in {out['blocks']} blocks against {out['true_fields']:,} true "
               f"fields (world seed {out['world_seed']}, instances under {min_pixels} px left out)")  # fmt: skip
    click.echo(f"  objects (IoU > 0.5): precision {f(out['precision'])}, recall {f(out['recall'])}, "
               f"F1 {f(out['f1'])} ({out['tp']:,} matched)")  # fmt: skip
    click.echo(f"  extent IoU {f(out['extent_iou'])}, boundary F (1 px) {f(out['boundary_f'])}, "
               f"median area error {f(out['median_area_error'])}")  # fmt: skip
