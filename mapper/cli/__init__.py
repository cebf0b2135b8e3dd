"""The `mapper` command. Heavy libraries are imported inside commands so `mapper --help` is instant."""

from __future__ import annotations

import logging
import sys

import click

from mapper import __version__
from mapper.cli.al import al
from mapper.cli.allocate import allocate
from mapper.cli.cache import cache
from mapper.cli.compare import compare
from mapper.cli.croptype import croptype
from mapper.cli.decide import decide
from mapper.cli.demo import demo
from mapper.cli.estimate import estimate
from mapper.cli.evaluate import evaluate
from mapper.cli.export import export
from mapper.cli.fetch import fetch
from mapper.cli.fields import fields
from mapper.cli.grid import grid
from mapper.cli.labels import labels
from mapper.cli.report import report
from mapper.cli.run import run
from mapper.cli.segment import segment
from mapper.cli.serve import serve
from mapper.cli.train import train
from mapper.cli.validate import validate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mapper")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Map cropland at 2 m from web-map satellite imagery, province by province (the CropLayer method)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


cli.add_command(grid)
cli.add_command(fetch)
cli.add_command(demo)
cli.add_command(cache)
cli.add_command(labels)
cli.add_command(train)
cli.add_command(segment)
cli.add_command(decide)
cli.add_command(evaluate)
cli.add_command(run)
cli.add_command(validate)
cli.add_command(compare)
cli.add_command(report)
cli.add_command(al)
cli.add_command(croptype)
cli.add_command(fields)
cli.add_command(allocate)
cli.add_command(estimate)
cli.add_command(serve)
cli.add_command(export)


def main() -> None:
    """Entry point: known user errors print one clear line and exit 2, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Exception as e:
        from mapper.cli.errors import USER_ERRORS  # imported here so that `mapper --help` stays light

        if not isinstance(e, USER_ERRORS):
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
