"""`mapper cache`: check and repair the per-source MBTiles tile caches."""

from __future__ import annotations

from pathlib import Path

import click

_config_option = click.option(
    "--config",
    "config_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML config file (repeatable; later files override earlier ones).",
)
_source_option = click.option(
    "--source",
    "source",
    required=True,
    help="Source name as in the config (e.g. mapbox), a source set (e.g. web), or a comma-separated list.",
)


def _cache_files(config_files: tuple[Path, ...], source: str) -> list[tuple[str, Path, str]]:
    """(source name, cache file, attribution) for each source that `source` names."""
    from mapper.config import ConfigError, load_config

    try:
        config = load_config(list(config_files))
        names = config.resolve_sources(source)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    out = []
    for n in names:
        attribution = getattr(config.sources[n], "attribution", "") or ""
        out.append((n, config.cache.dir / f"{n}.mbtiles", attribution))
    return out


@click.group("cache", help="Check and repair the tile caches (one MBTiles file per source, shared by runs).")
def cache() -> None:
    pass


@cache.command("check")
@_source_option
@_config_option
def check(source: str, config_files: tuple[Path, ...]) -> None:
    """Run SQLite's quick_check and decode every cached tile; exit 1 if any cache is damaged."""
    from mapper.imagery.mbtiles import MBTilesCache

    damaged = []
    for name, path, _ in _cache_files(config_files, source):
        if not path.exists():
            click.echo(f"{name}: no cache file yet at {path}")
            continue
        report = MBTilesCache.verify(path)
        click.echo(f"{name}: {report.summary()}")
        if not report.ok:
            damaged.append(name)
    if damaged:
        for name in damaged:
            click.echo(f"fix: mapper cache rebuild --source {name}", err=True)
        raise SystemExit(1)


@cache.command("rebuild")
@_source_option
@_config_option
@click.option("--force", is_flag=True, help="Rebuild even when the check finds nothing wrong.")
def rebuild(source: str, config_files: tuple[Path, ...], force: bool) -> None:
    """Move a damaged cache aside (<file>.corrupt-<time>) and write a fresh one with every readable tile.

    Stop runs that use the cache first: the file is replaced underneath them.
    """
    from mapper.imagery.mbtiles import MBTilesCache

    for name, path, attribution in _cache_files(config_files, source):
        if path.exists() and not force:
            report = MBTilesCache.verify(path)
            if report.ok:
                click.echo(f"{name}: {path} is healthy ({report.tiles} tiles); nothing to do (see --force)")
                continue
            click.echo(f"{name}: {report.summary()}")
        result = MBTilesCache.rebuild(path, name=name, attribution=attribution or None)
        click.echo(f"{name}: {result.summary()}")
