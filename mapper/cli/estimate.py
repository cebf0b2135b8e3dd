"""`mapper estimate`: what a run will cost before any work — blocks, km², tiles and their price per source,
storage, time and CPU/GPU hours, each figure with what it rests on."""

from __future__ import annotations

import json

import click

from mapper.cli.options import config_option, load, region_options, world_seed_option


@click.command("estimate", short_help="What a run of a region will cost, before any work.")
@region_options
@click.option("--source", "-s", default="demo", show_default=True,
              help="Sources as `mapper run` takes them: a set (demo, web) or names (mapbox,google).")  # fmt: skip
@click.option("--max-blocks", type=click.IntRange(min=1), help="The spread sample of N blocks `mapper run` would take.")
@click.option("--gpus", type=click.IntRange(min=0), default=0, show_default=True,
              help="GPUs of the machine (0: CPU only).")  # fmt: skip
@click.option("--in-process", is_flag=True, help="Time the in-process executor's start-up instead of a local Ray's.")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON (value, unit, basis per figure).")
@config_option
@world_seed_option
def estimate(province, country, bbox, source, max_blocks, gpus, in_process, as_json, config_files, world_seed) -> None:
    """Plan the region as `mapper run` would and estimate the run: blocks and their true area, the tiles each
    source fetches and their price (sources.NAME.price_per_1000_tiles), the bytes the run leaves, and time, CPU
    and GPU hours from the throughputs recorded on a known machine class (configs/throughputs.yaml). Nothing is
    fetched; tokens are not needed.

    Example: mapper estimate --province Guangdong --source demo"""
    from mapper.estimate.core import estimate as estimate_run
    from mapper.estimate.core import estimate_sources
    from mapper.estimate.plan import check_mappable, plan_region
    from mapper.estimate.text import render
    from mapper.run.plan import resolve_region

    config = load(config_files, world_seed)
    sources = estimate_sources(config, source)
    region = resolve_region(province, country, bbox)
    plan = plan_region(region, max_blocks)
    check_mappable(plan, region)
    est = estimate_run(config, sources, plan, gpus=gpus, executor="in_process" if in_process else "ray")
    click.echo(json.dumps(est.to_dict(), indent=1) if as_json else render(est))
