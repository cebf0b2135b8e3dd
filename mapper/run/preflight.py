"""What a run checks before any work: its two sources (with their tokens) and every model it will load.

A model that cannot be used would otherwise be found by the first stage that loads it, after the imagery is
fetched, once per batch and attempt: for a province thousands of failures of one cause. Each model is verified
here as its stage will load it — files, sha256, architecture (the weights are loaded into the network the
checkpoint describes), and the class taxonomy the run relies on — and the first problem fails the run at once,
naming the file and the fix.
"""

from __future__ import annotations

from mapper.models.checkpoint import CheckpointError

SETTING = {"iqa": "run.models.iqa", "segmentation": "run.models.segmentation", "decisions": "run.models.decisions"}


def check_sources(config, source: str) -> tuple[str, str]:
    """The run's two sources, with their tokens present; fails before any work, naming the problem."""
    from mapper.config.models import ConfigError
    from mapper.imagery.http_config import HttpSourceConfig

    names = config.resolve_sources(source)
    if len(names) != 2:
        raise ConfigError(
            f"--source {source!r} gives {len(names)} source(s) ({', '.join(names)}); a run integrates two: "
            "give a source set (e.g. demo, web) or two names (e.g. mapbox,google)"
        )
    for name in names:
        sc = config.sources[name]
        if isinstance(sc, HttpSourceConfig):
            sc.token()  # MissingTokenError names the variable
    return names[0], names[1]


def check_dem(dem: str) -> None:
    """A DEM path given as run.dem opens (DemError / FileNotFoundError naming the fix otherwise)."""
    if dem in ("auto", "none", "world"):
        return
    from mapper.features.terrain import open_dem

    open_dem(dem).close()


def check_models(models) -> None:
    """Verify the run's models (a RunModelsConfig) as the stages will load them; CheckpointError if not."""
    check_iqa_model(models.iqa)
    check_segmentation_model(models.segmentation)
    check_decision_models(models.decisions)


def _fix(kind: str) -> str:
    return f"re-copy or re-train it, or set {SETTING[kind]} in your --config to a good one"


def _loaded(spec: str, kind: str):
    from mapper.models.checkpoint import load_checkpoint
    from mapper.models.registry import resolve_checkpoint

    try:
        return load_checkpoint(resolve_checkpoint(spec), kind=kind)
    except CheckpointError as e:
        raise CheckpointError(f"the run's {kind} model ({SETTING[kind]}: {spec}) cannot be used: {e}") from None


def _same_classes(have, want, what: str, spec: str, kind: str) -> None:
    if tuple(have) != tuple(want):
        raise CheckpointError(
            f"the run's {kind} model ({SETTING[kind]}: {spec}) has {what} {list(have)}; the run needs "
            f"{list(want)} in this order; {_fix(kind)}"
        )


def check_iqa_model(spec: str) -> None:
    from mapper.world.conditions import COVERAGE_NAMES

    ckpt = _loaded(spec, "iqa")
    _same_classes(ckpt.classes, COVERAGE_NAMES, "coverage classes", spec, "iqa")


def check_segmentation_model(spec: str) -> None:
    from mapper.seg.model import CLASSES

    ckpt = _loaded(spec, "segmentation")
    _same_classes(ckpt.classes, CLASSES, "classes", spec, "segmentation")


def check_decision_models(spec: str) -> None:
    from mapper.decide.pipeline import INTEGRATION_MODEL_FEATURES, load_decision_models
    from mapper.decide.table import SOURCE_FEATURES
    from mapper.decide.truth import CORRECTNESS_CLASSES, INTEGRATION_CLASSES

    try:
        correctness, integration = load_decision_models(spec)
    except CheckpointError as e:
        where = f"{SETTING['decisions']}: {spec}"
        raise CheckpointError(f"the run's decision models ({where}) cannot be used: {e}") from None
    _same_classes(correctness.classes, CORRECTNESS_CLASSES, "correctness classes", spec, "decisions")
    _same_classes(integration.classes, INTEGRATION_CLASSES, "integration classes", spec, "decisions")
    for model, want in ((correctness, SOURCE_FEATURES), (integration, INTEGRATION_MODEL_FEATURES)):
        missing = [f for f in model.features if f not in want]
        if missing:
            raise CheckpointError(
                f"the run's {model.kind} model ({SETTING['decisions']}: {spec}) uses features the run does not "
                f"compute: {', '.join(missing[:8])}; {_fix('decisions')}"
            )
