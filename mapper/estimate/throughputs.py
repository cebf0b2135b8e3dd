"""The recorded throughputs and bytes an estimate rests on (configs/throughputs.yaml), and the rates derived from
them: a block's seconds, the fixed seconds of each executor, planning seconds a region block.

The figures are measurements of named runs, never guesses: what has not been measured (a GPU) is absent, and the
estimate says so instead of inventing it."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from pydantic import Field, model_validator

from mapper.config.models import ConfigError, StrictModel

THROUGHPUTS_FILE = "throughputs.yaml"


class RunRecord(StrictModel):
    """One whole `mapper run` command: its blocks and wall seconds."""

    blocks: int = Field(ge=1)
    seconds: float = Field(gt=0)
    basis: str


class Planning(StrictModel):
    blocks: int = Field(ge=1)
    seconds: float = Field(gt=0)
    basis: str


class StageSeconds(StrictModel):
    """Worker seconds per stage of one recorded run: how a block's time splits."""

    fetch: float = Field(ge=0)
    iqa: float = Field(ge=0)
    segment: float = Field(ge=0)
    features: float = Field(ge=0)
    decide: float = Field(ge=0)
    final: float = Field(ge=0)
    per_source: list[str]
    models: list[str]
    basis: str

    def _share(self, names: list[str]) -> float:
        seconds = {k: v for k, v in self.model_dump().items() if isinstance(v, float)}
        return sum(seconds[n] for n in names) / sum(seconds.values())

    @property
    def per_source_share(self) -> float:
        """Share of a block's time spent once per source (fetch, IQA, segmentation)."""
        return self._share(self.per_source)

    @property
    def model_share(self) -> float:
        """Share of a block's time spent in the models (what a GPU would take over)."""
        return self._share(self.models)


class FetchRates(StrictModel):
    http_tiles_per_s: float = Field(gt=0)
    http_basis: str
    world_tiles_per_s: float = Field(gt=0)
    world_basis: str


class MachineClass(StrictModel):
    description: str
    cores: int = Field(ge=1)
    runs: dict[str, list[RunRecord]]
    region_blocks_of_runs: int = Field(ge=0)
    planning: Planning
    stage_seconds: StageSeconds
    fetch: FetchRates

    @model_validator(mode="after")
    def _one_slope(self):
        if not any(len({r.blocks for r in runs}) >= 2 for runs in self.runs.values()):
            raise ValueError("runs: some executor needs runs of two sizes (blocks) to give the seconds a block")
        return self

    @property
    def planning_s_per_region_block(self) -> float:
        return self.planning.seconds / self.planning.blocks

    def slope(self) -> tuple[float, str]:
        """Seconds a block (two sources) and its basis: the fit over the first executor with two run sizes."""
        for executor, runs in self.runs.items():
            if len({r.blocks for r in runs}) >= 2:
                lo, hi = min(runs, key=lambda r: r.blocks), max(runs, key=lambda r: r.blocks)
                seconds = (hi.seconds - lo.seconds) / (hi.blocks - lo.blocks)
                return seconds, f"{executor.replace('_', '-')} runs of {lo.blocks} and {hi.blocks} blocks, {lo.basis}"
        raise AssertionError("validated: some executor has two run sizes")

    def fixed_seconds(self, executor: str) -> tuple[float, str]:
        """Seconds of a run that do not grow with its blocks (start-up, models, outputs), for an executor: its
        smallest recorded run less its blocks at the slope and its planning."""
        if executor not in self.runs:
            known = ", ".join(self.runs)
            raise ConfigError(f"no recorded run of executor {executor!r} in {THROUGHPUTS_FILE}; recorded: {known}")
        run = min(self.runs[executor], key=lambda r: r.blocks)
        slope, _ = self.slope()
        planning = self.region_blocks_of_runs * self.planning_s_per_region_block
        return max(run.seconds - run.blocks * slope - planning, 0.0), run.basis


class StorageItem(StrictModel):
    bytes: float = Field(ge=0)
    what: str


class Storage(StrictModel):
    """Bytes a run leaves, measured on one run: by megapixel (and source), by block, and once."""

    basis: str
    mosaic_compress: str
    mosaic_level: int
    per_megapixel_and_source: dict[str, StorageItem]
    per_megapixel: dict[str, StorageItem]
    per_block: dict[str, StorageItem]
    fixed: dict[str, StorageItem]
    real_imagery_note: str


class Throughputs(StrictModel):
    default_machine_class: str
    machine_classes: dict[str, MachineClass]
    storage: Storage

    @model_validator(mode="after")
    def _default_known(self):
        if self.default_machine_class not in self.machine_classes:
            raise ValueError(f"default_machine_class {self.default_machine_class!r} is not under machine_classes")
        return self

    def machine(self, name: str | None = None) -> tuple[str, MachineClass]:
        name = name or self.default_machine_class
        if name not in self.machine_classes:
            known = ", ".join(self.machine_classes)
            raise ConfigError(f"unknown machine class {name!r}; recorded in {THROUGHPUTS_FILE}: {known}")
        return name, self.machine_classes[name]


@functools.cache
def load_throughputs(path: str | None = None) -> Throughputs:
    """configs/throughputs.yaml as packaged (or the YAML file at `path`), validated."""
    from mapper.config.loader import read_yaml, validate_config

    if path is None:
        where = f"<packaged {THROUGHPUTS_FILE}>"
        data = read_yaml(where, resources.files("mapper.configs").joinpath(THROUGHPUTS_FILE).read_text("utf-8"))
    else:
        where, data = path, read_yaml(Path(path))
    return validate_config(Throughputs, data, where, "throughputs")
