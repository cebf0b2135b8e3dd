"""`mapper report`: the run as one self-contained HTML page (figures and the three-level numbers)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("report", short_help="Write a run's HTML report: maps, plots, the three-level numbers.")
@click.argument("run_dir", type=click.Path(file_okay=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML file to write [default: RUN_DIR/report/index.html].")  # fmt: skip
@click.option("--labels", type=click.Path(path_type=Path),
              help="Labelled blocks to validate against (as `mapper validate --labels`).")  # fmt: skip
@click.option("--statistics", type=click.Path(path_type=Path),
              help="CSV of province,cropland_ha overriding the reference statistics.")  # fmt: skip
@click.option("--extra-rounds", type=click.IntRange(min=0), default=0, show_default=True,
              help="Extra labelling rounds already spent (the stop verdict's exception).")  # fmt: skip
@click.option("--revalidate", is_flag=True,
              help="Validate again even when RUN_DIR/validation.json was computed from the same inputs.")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def report(run_dir, out, labels, statistics, extra_rounds, revalidate, quiet):
    """Validate RUN_DIR (as `mapper validate`) and write one HTML page that opens from disk, every figure
    embedded: the area fraction per block (the CropLayer paper's Fig. 17), coverage type per source
    (Figs. 6-7), integration decisions (Fig. 10), the semantic correctness distribution (Fig. 9), per-block
    IoU, mapped area against the statistics (Figs. 12/16), the decision models' feature importance
    (Fig. 11), the map preview and a gallery of blocks; with the pixel, block and province numbers and the
    stop verdicts. The numbers are those of RUN_DIR/validation.json when it was computed from the same run
    state, labels, statistics and extra rounds, else the run is validated now.
    Example: mapper report runs/gd && xdg-open runs/gd/report/index.html"""
    from mapper.validation.report import write_report

    result = write_report(run_dir, out=out, labels=labels, statistics=statistics, extra_rounds=extra_rounds,
                          progress=not quiet and sys.stderr.isatty(), reuse=not revalidate)  # fmt: skip
    for problem in result.problems:
        click.echo(f"warning: figure not drawn: {problem}", err=True)
    how = f"validation reused: {result.validation['reused']}" if result.validation.get("reused") else "validated now"
    click.echo(f"{result.path} ({len(result.figures)} figures; {how})")
