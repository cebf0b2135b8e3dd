"""The stages a run knows: the cropland stages of mapper.run.stages, then those other packages register through
the "mapper.stages" entry points (crop types do, in pyproject.toml), so the run engine never imports a
capability and a new one (fields, say) adds its stage without touching mapper.run.

An entry point names a StageSpec (or a sequence of them). Stages are ordered so that each comes after the
stages it waits for; registered stages keep their entry-point order otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable

from mapper.run.stage import StageSpec
from mapper.run.stages import CROPLAND_STAGES

ENTRY_POINT_GROUP = "mapper.stages"
_registered: list[StageSpec] | None = None  # loaded once per process (each Ray actor loads its own)


class StageRegistryError(RuntimeError):
    """A registered stage that cannot take part in a run (a name taken twice, an input that no stage makes)."""


def all_stages() -> tuple[StageSpec, ...]:
    """Every known stage, in run order: the cropland stages, then the registered ones."""
    global _registered
    if _registered is None:
        _registered = list(_from_entry_points())
    return _ordered([*CROPLAND_STAGES, *_registered])


def register_stage(spec: StageSpec) -> None:
    """Add a stage in this process (plugins and tests; installed packages use the entry points)."""
    all_stages()
    _ordered([*CROPLAND_STAGES, *_registered, spec])  # refused now, not at the first run
    _registered.append(spec)


def unregister_stage(name: str) -> None:
    global _registered
    all_stages()
    _registered = [s for s in _registered if s.name != name]


def stage(name: str) -> StageSpec:
    for spec in all_stages():
        if spec.name == name:
            return spec
    raise StageRegistryError(f"no stage {name!r} is registered (known: {', '.join(stage_names())})")


def stage_names() -> tuple[str, ...]:
    return tuple(s.name for s in all_stages())


def active_stages(config: dict) -> tuple[StageSpec, ...]:
    """The stages a run with this config (MapperConfig as a dict) walks its blocks through: every stage that
    is always on, and the optional ones its config enables."""
    return tuple(s for s in all_stages() if s.enabled is None or s.enabled(config))


def _from_entry_points() -> Iterable[StageSpec]:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        loaded = ep.load()
        for spec in loaded if isinstance(loaded, (list, tuple)) else (loaded,):
            if not isinstance(spec, StageSpec):
                raise StageRegistryError(f"entry point {ep.name} = {ep.value} is not a mapper.run.stage.StageSpec")
            yield spec


def _ordered(specs: list[StageSpec]) -> tuple[StageSpec, ...]:
    """The specs with every stage after its inputs (a stable topological order); a duplicate name, an unknown
    input or a circle is refused by name."""
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StageRegistryError(f"stage name(s) registered twice: {', '.join(dupes)}")
    for s in specs:
        unknown = [a for a in s.after if a not in names]
        if unknown:
            raise StageRegistryError(f"stage {s.name!r} waits for unknown stage(s) {', '.join(unknown)}")
        if s.per_source and any(not _spec(specs, a).per_source for a in s.after):
            raise StageRegistryError(f"stage {s.name!r} runs per source but waits for a per-block stage")
    out: list[StageSpec] = []
    pending = list(specs)
    while pending:
        ready = next((s for s in pending if all(a in {o.name for o in out} for a in s.after)), None)
        if ready is None:
            raise StageRegistryError(f"stages wait for each other in a circle: {', '.join(s.name for s in pending)}")
        out.append(ready)
        pending.remove(ready)
    return tuple(out)


def _spec(specs: list[StageSpec], name: str) -> StageSpec:
    return next(s for s in specs if s.name == name)
