"""`mapper run`: map a province, a country or a box end to end, resumably, on Ray or in this process."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mapper.cli.options import config_option, load, region_options, world_seed_option


class RunUsageError(click.ClickException):
    exit_code = 2


@click.command("run", short_help="Map cropland of a region end to end (fetch → ... → map outputs).")
@region_options
@click.option("--source", "-s", default="demo", show_default=True,
              help="Two imagery sources: a source set (demo, web) or two names (mapbox,google).")  # fmt: skip
@click.option("--max-blocks", type=click.IntRange(min=1), help="A spread sample of N of the region's blocks.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="The run directory to create.")
@click.option("--resume", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Continue the run in this directory (region, sources and config come from it).")  # fmt: skip
@click.option("--address", help="A Ray cluster (host:port); default: a local Ray for this run.")
@click.option("--in-process", is_flag=True, help="Run every stage in this process, without Ray (same outputs).")
@click.option("--retry-failed", is_flag=True,
              help="With --resume: give the failed blocks their attempts again (once their cause is fixed).")
@click.option("--dry-run", is_flag=True, help="Plan and schedule with trivial stages (no imagery, no models).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars (progress still goes to the run log).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@config_option
@world_seed_option
def run(province, country, bbox, source, max_blocks, out, resume, address, in_process, retry_failed, dry_run, quiet,
        as_json, config_files, world_seed):  # fmt: skip
    """Fetch both sources' imagery of every block, assess it (IQA), segment cropland, compute the block
    features, judge each source's semantic correctness, integrate the two sources, and write the final masks;
    then the map (COG blocks + VRT with overviews), cropland polygons per prefecture (GeoPackage), the block
    table (GeoParquet), the area against the official statistic (area.csv) and PNG maps.

    The run directory records every block × stage; after any interruption `mapper run --resume DIR` redoes
    no finished work. Example: mapper run --province Guangdong --source demo --max-blocks 8 --out runs/gd"""
    from mapper.run.session import RunRequest
    from mapper.run.session import run as run_session

    if address:
        from mapper.pipelines.ray_auth import prepare_cluster_auth
        from mapper.run.executor import check_reachable

        check_reachable(address)  # before any work: Ray itself would retry for minutes
        prepare_cluster_auth(address)  # token authentication of a cluster started with `ray start`
    if resume is None and out is None:
        raise RunUsageError("give --out DIR for a new run, or --resume DIR to continue one")
    if retry_failed and resume is None:
        raise RunUsageError("--retry-failed continues a run: give it with --resume DIR")
    if resume is not None and out is not None and Path(out).resolve() != Path(resume).resolve():
        raise RunUsageError("give --out for a new run or --resume for an existing one, not both")
    if resume is not None:
        req = _resume_request(resume, province, country, bbox, source, max_blocks, config_files, world_seed)
    else:
        from mapper.run.plan import resolve_region

        config = load(config_files, world_seed)
        req = RunRequest(config, resolve_region(province, country, bbox), source, out=out, max_blocks=max_blocks)
        req.on_planned = _estimate_hook(config, req.region.name, source, in_process, quiet)
    req.quiet, req.dry_run, req.retry_failed = quiet, dry_run, retry_failed
    summary = run_session(req, _executor_factory(in_process, address, dry_run))
    if as_json:
        click.echo(json.dumps(summary, indent=1, default=str))
    else:
        click.echo(summary.get("text") or _short(summary))
    if summary.get("failed"):
        raise SystemExit(1)


def _resume_request(resume, province, country, bbox, source, max_blocks, config_files, world_seed, overrides=None):
    """The saved run's request; options given again must agree (the run store names any difference)."""
    from mapper.config import load_config
    from mapper.run.plan import region_from_spec, resolve_region
    from mapper.run.session import BLOCKS_FILE, RunRequest
    from mapper.store.run_store import RunStore

    saved = RunStore.open(resume).identity
    given_overrides = {**(overrides or {}), **({} if world_seed is None else {"world.seed": world_seed})}
    config = load_config([resume / "config.yaml", *config_files], given_overrides)
    given = province or country or bbox
    region = resolve_region(province, country, bbox) if given else region_from_spec(saved["region"])
    sources = source if source != "demo" or not saved.get("sources") else ",".join(saved["sources"])
    listed = resume / BLOCKS_FILE
    blocks = listed.read_text(encoding="utf-8").split() if "blocks" in saved and listed.exists() else None
    return RunRequest(config, region, sources, resume=resume, blocks=blocks,
                      max_blocks=max_blocks if max_blocks is not None else saved.get("max_blocks"))  # fmt: skip


def _estimate_hook(config, region_name: str, source: str, in_process: bool, quiet: bool):
    """Print the run's estimate (stderr) once it is planned, and keep it as RUN/estimate.json."""
    from mapper.estimate.inrun import estimate_hook

    echo = None if quiet else lambda text: click.echo(text, err=True)
    return estimate_hook(config, region_name, source, "in_process" if in_process else "ray", echo)


def _executor_factory(in_process: bool, address: str | None, dry_run: bool):
    if in_process:
        from mapper.run.executor import InProcessExecutor

        return lambda ctx: InProcessExecutor(ctx, dry_run=dry_run)

    def ray_executor(ctx):
        from mapper.pipelines.ray_executor import RayExecutor

        return RayExecutor(ctx, address=address, dry_run=dry_run)

    return ray_executor


def _short(summary: dict) -> str:
    return (
        f"{summary.get('finished', 0)} of {summary.get('blocks', 0)} blocks mapped, {summary.get('failed', 0)} failed"
    )
