"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path

import click

config_option = click.option(
    "--config",
    "config_files",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="YAML config merged over the defaults (repeatable).",
)
world_seed_option = click.option(
    "--world-seed", type=int, default=None, help="Which simulated world (default: the config's world.seed)."
)


def load(config_files, world_seed=None, overrides: dict | None = None):
    from mapper.config import load_config

    overrides = {**(overrides or {}), **({} if world_seed is None else {"world.seed": world_seed})}
    return load_config(list(config_files), overrides)
