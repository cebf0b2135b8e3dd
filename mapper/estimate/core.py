"""The arithmetic of an estimate, before any work: blocks → km² → tiles and their price → bytes → hours. Each
figure carries its value, unit and basis (what it was computed from or measured on)."""

from __future__ import annotations

from dataclasses import dataclass

from mapper.config.models import ConfigError
from mapper.estimate.compute import compute_figures
from mapper.estimate.figure import Figure
from mapper.estimate.plan import Plan
from mapper.estimate.sources import source_figures
from mapper.estimate.storage import storage_figures
from mapper.estimate.throughputs import Throughputs, load_throughputs
from mapper.estimate.tiles import block_areas_m2, extent

EXECUTORS = ("ray", "in_process")


@dataclass(frozen=True)
class Estimate:
    region: str
    sources: tuple[str, ...]
    blocks: int
    region_blocks: int
    machine_class: str
    executor: str
    gpus: int
    figures: tuple[Figure, ...]

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)

    def to_dict(self) -> dict:
        head = {k: v for k, v in self.__dict__.items() if k != "figures"}
        return {**head, "sources": list(self.sources), "figures": {f.key: f.to_dict() for f in self.figures}}


def estimate_sources(config, source: str) -> list[str]:
    """The sources of `--source` (a source, a set, or names joined by commas); an unknown one names the fix."""
    try:
        names = config.resolve_sources(source)
    except ConfigError as e:
        raise ConfigError(
            f"{e}: give one of them with --source, or define it under `sources:` in a --config file"
        ) from None
    if not names:
        raise ConfigError(f"--source {source!r} names no source; give e.g. --source demo or --source mapbox,google")
    return names


def estimate(
    config,
    sources: list[str],
    plan: Plan,
    *,
    gpus: int = 0,
    executor: str = "ray",
    machine_class: str | None = None,
    throughputs: Throughputs | None = None,
) -> Estimate:
    """The estimate of running `plan`'s blocks from `sources` (names in `config`, a MapperConfig)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}: one of {EXECUTORS}")
    tp = throughputs or load_throughputs()
    name, machine = tp.machine(machine_class)
    ext = extent(plan.ix, plan.iy, config.zoom)
    figures = [*_extent_figures(plan, ext.area_m2)]
    for source in sources:
        figures += source_figures(config, source, ext, plan.blocks, machine.fetch)
    figures += storage_figures(config, sources, ext, plan.blocks, tp.storage)
    figures += compute_figures(name, machine, plan.blocks, plan.region_blocks, len(sources), gpus, executor)
    return Estimate(plan.region, tuple(sources), plan.blocks, plan.region_blocks, name, executor, gpus, tuple(figures))


def _extent_figures(plan: Plan, area_m2: float) -> list[Figure]:
    inside_km2 = float((block_areas_m2(plan.iy) * plan.frac_inside).sum()) / 1e6
    inside = f"{inside_km2:,.{1 if inside_km2 < 100 else 0}f}"
    how = (
        f"a spread sample (--max-blocks {plan.blocks}) of the {plan.region_blocks:,} 0.05° blocks of {plan.region}"
        if plan.sampled
        else f"the 0.05° blocks meeting {plan.region}"
    )
    return [
        Figure("blocks", "blocks", plan.blocks, "blocks", f"{how}, planned as `mapper run` plans them"),
        Figure(
            "area",
            "area",
            area_m2 / 1e6,
            "km2",
            f"true ground area of the blocks (WGS84 ellipsoid); {inside} km² of it inside {plan.region}",
        ),
    ]
