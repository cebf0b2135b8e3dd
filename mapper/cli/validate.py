"""`mapper validate`: the three-level validation of a run (pixel IoU, block semantic correctness, area vs
statistics) and the active-learning stop verdict per province."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command("validate", short_help="Validate a run: pixel IoU, semantic correctness, area vs statistics, stop.")
@click.argument("run_dir", type=click.Path(file_okay=True, path_type=Path))
@click.option("--labels", type=click.Path(path_type=Path),
              help="Labelled blocks (<block_id>/ folders) to judge against [default: the world's truth for "
                   "simulated-world runs].")  # fmt: skip
@click.option("--statistics", type=click.Path(path_type=Path),
              help="CSV of province,cropland_ha overriding the reference statistics.")  # fmt: skip
@click.option("--extra-rounds", type=click.IntRange(min=0), default=0, show_default=True,
              help="Extra labelling rounds already spent on these provinces; with 3 or more a PCS below 0.80 is "
                   "waived in a province with poor imagery (the paper's exception for persistently cloudy "
                   "provinces; al.stop.waiver_min_poor_imagery_share).")  # fmt: skip
@click.option("--stop-rule", type=click.Choice(["point", "lower_bound"]), default="point", show_default=True,
              help="How the stop thresholds are met: point, by the values (the paper's); lower_bound, by the "
                   "lower end of each value's 95 % interval (a label campaign's default).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def validate(run_dir, labels, statistics, extra_rounds, stop_rule, as_json, quiet):
    """Judge a run directory at three scales (DESIGN.md §8, the CropLayer paper's validation):

    \b
    1. pixel level: IoU, precision and recall of the final map and of each source's masks against the truth
       (--labels, or the simulated world's truth), in true ground area, pooled over blocks and per block;
    2. block level: the semantic correctness rate (share of blocks judged TP or TN), from the truth where
       there is truth, else from the run's correctness model;
    3. province level: mapped cropland against the statistic (PCS, the ±10 % criterion); a sample run is
       compared with the truth of the same area, or estimated with a 95 % interval.

    Each headline number has its 95 % interval (a block bootstrap, seeded; `ci95` in the JSON). Then the stop
    verdict per province (IoU ≥ 0.85, semantic correctness ≥ 0.85, PCS ≥ 0.80, by --stop-rule), naming the
    criteria that fail. The report is also written to RUN_DIR/validation.json.
    Example: mapper validate runs/gd --json"""
    from mapper.validation.validate import format_text, validate_run

    report = validate_run(run_dir, labels=labels, statistics=statistics, extra_rounds=extra_rounds,
                          progress=not quiet and sys.stderr.isatty(), stop_rule=stop_rule)  # fmt: skip
    if as_json:
        click.echo(json.dumps(report, indent=1, ensure_ascii=False))
    else:
        click.echo(format_text(report))
    if report.get("write_error"):
        click.echo(f"warning: {report['write_error']}", err=True)
