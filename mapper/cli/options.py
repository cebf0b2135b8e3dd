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


def region_options(func):
    """--province / --country / --bbox: the region of `mapper run` and of `mapper estimate`."""
    for option in reversed((
        click.option("--province", "-p", help="A province by any common name: Guangdong, 广东省, CN044."),
        click.option("--country", help="A whole country (China)."),
        click.option("--bbox", help="WEST,SOUTH,EAST,NORTH in degrees."),
    )):  # fmt: skip
        func = option(func)
    return func


def load(config_files, world_seed=None, overrides: dict | None = None):
    from mapper.config import load_config

    overrides = {**(overrides or {}), **({} if world_seed is None else {"world.seed": world_seed})}
    return load_config(list(config_files), overrides)


class RegistryChoice(click.Choice):
    """The names of a registry (selection strategies, crop-type model kinds), read when the option is shown or
    parsed: the registries import pandas or torch, which `mapper --help` should not wait for. `names` is the
    registry's "module:function" that returns them."""

    def __init__(self, names: str) -> None:
        self._names = names
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        import importlib

        module, function = self._names.split(":")
        return getattr(importlib.import_module(module), function)()

    @choices.setter
    def choices(self, _value) -> None:  # click.Choice.__init__ assigns its list; the registry is the truth
        pass
