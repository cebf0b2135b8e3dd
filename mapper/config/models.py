"""The one config system: pydantic models that forbid unknown keys, filled from YAML in configs/."""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SerializeAsAny,
    TypeAdapter,
    field_validator,
    model_serializer,
    model_validator,
)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceConfig(StrictModel):
    """The config of an imagery source. Each kind's class lives beside its source, with the field
    `kind: Literal["..."] = "..."`, an `open(name, config)` that builds the TileSource, and `@register_source`."""

    # Left out of dumps (exclude): a price changes no output, so it must not enter a run's identity or its saved
    # config, and runs made before the field existed still resume.
    price_per_1000_tiles: float | None = Field(
        None, ge=0, exclude=True,
        description="What 1,000 tiles of this source cost, in US dollars: `mapper estimate` prices a run with it.",
    )  # fmt: skip

    @property
    def simulated(self) -> bool:
        """This source is the simulated world (its truth is known): True only for the world's kind."""
        return False

    @property
    def remote(self) -> bool:
        """Fetched over the network, so opened behind the MBTiles tile cache."""
        return False

    def open(self, name: str, config: MapperConfig):
        """The TileSource (mapper.imagery.tiles) this config describes, called `name` in `config`."""
        raise NotImplementedError(f"{type(self).__name__} must define open(name, config)")


# ------------------------------------------------------------------------------------- source kinds
# kind -> its config class. Each source module registers its own; the installed modules are named by the
# entry-point group "mapper.sources" (pyproject.toml) and loaded when a config is first validated, so this
# package imports none of them (they import it) and a plugin package adds a kind the same way.
SOURCE_ENTRY_POINTS = "mapper.sources"
_source_kinds: dict[str, type[SourceConfig]] = {}
_entry_point_kinds: list[str] | None = None  # loaded once per process


def register_source(cls: type[SourceConfig]) -> type[SourceConfig]:
    """Class decorator: sources of cls's `kind` parse as cls and open with cls.open (installed packages name the
    module in the "mapper.sources" entry points; plugins and tests may call it directly)."""
    kind = cls.model_fields["kind"].default if "kind" in cls.model_fields else None
    if not isinstance(kind, str):
        raise TypeError(f"{cls.__name__} needs a field kind: Literal['name'] = 'name' to be a source kind")
    _source_kinds[kind] = cls
    return cls


def source_kinds() -> dict[str, type[SourceConfig]]:
    """Every installed source kind and its config class, in entry-point order, then those registered here."""
    global _entry_point_kinds
    if _entry_point_kinds is None:
        from importlib.metadata import entry_points

        names = []
        for ep in entry_points(group=SOURCE_ENTRY_POINTS):
            try:
                ep.load()  # its module registers its kinds
            except (ImportError, AttributeError) as e:
                raise ImportError(f"source kind {ep.name!r} cannot be loaded ({ep.value}: {e}); reinstall mapper "
                                  "(`pip install -e .`) if its package metadata is older than its code") from e
            if ep.name not in _source_kinds:
                raise TypeError(f"entry point {ep.name} = {ep.value} registers no source kind {ep.name!r}")
            names.append(ep.name)
        _entry_point_kinds = names
    order = [*_entry_point_kinds, *(k for k in _source_kinds if k not in _entry_point_kinds)]
    return {k: _source_kinds[k] for k in order}


@lru_cache
def _source_union(classes: tuple[type[SourceConfig], ...]) -> TypeAdapter:
    return TypeAdapter(Annotated[Union[classes], Field(discriminator="kind")])  # noqa: UP007 (a runtime tuple)


def _validate_source(value):
    """One entry of `sources`: the config class of its `kind`, as a discriminated union of the installed kinds."""
    return _source_union(tuple(source_kinds().values())).validate_python(value)


# A source's config: validated against the installed kinds when the config is, dumped as its own class.
AnySourceConfig = Annotated[SerializeAsAny[SourceConfig], PlainValidator(_validate_source)]


class CacheConfig(StrictModel):
    enabled: bool = True
    dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("MAPPER_CACHE_DIR", Path.home() / ".cache" / "mapper")),
        description="One MBTiles file per source lives here, shared across runs.",
    )


class MosaicConfig(StrictModel):
    """How block mosaics are written (lossless, tiled GeoTIFF with an internal mask)."""

    compress: Literal["zstd", "deflate", "lzw", "none"] = Field(
        "zstd", description="zstd level 1 writes ~2x faster than deflate level 1 for ~10 % larger files."
    )
    level: int = Field(1, ge=1, le=22, description="Compression level (deflate 1-9, zstd 1-22): 1 is fastest.")
    tile_size: int = Field(256, ge=16)
    threads: str = Field("ALL_CPUS", description="GDAL_NUM_THREADS for compressing tiles: a number or ALL_CPUS.")


class WorldConfig(StrictModel):
    seed: int = Field(0, ge=0, description="World seed; a different seed is a held-out world.")


class RunModelsConfig(StrictModel):
    """The models of a run: packaged names or checkpoint directories."""

    iqa: str = "iqa-default"
    segmentation: str = "seg-default"
    decisions: str = Field("decide-default", description="Directory with correctness/ and integration/ models.")


class RunConfig(StrictModel):
    """How `mapper run` works through a region's blocks."""

    models: RunModelsConfig = RunModelsConfig()
    dem: str = Field(
        "auto",
        description="Terrain source: 'auto' (the simulated world's DEM for world sources, none otherwise), "
        "'none', or the path of an SRTM GeoTIFF/VRT covering the region.",
    )
    statistics: Path | None = Field(
        None, description="A CSV of province,cropland_ha that overrides the packaged statistics."
    )
    max_attempts: int = Field(3, ge=1, le=20, description="Tries per block and stage before it is recorded as failed.")
    min_free_mb: float = Field(1024, ge=0, description="Disk space kept free on the run directory's disk: a run stops "
                               "with one clear error (resume it once there is room) rather than fill the disk.")
    blocks_in_flight: int = Field(16, ge=1, description="Blocks between fetch and final mask at once (bounds memory).")
    fetch_workers: int = Field(2, ge=1, description="Fetch actors (each keeps its sources' HTTP connection pools).")
    segment_workers: int | None = Field(None, ge=1, description="Segmentation actors (default: one per GPU, else 1).")
    segment_batch_blocks: int = Field(2, ge=1, description="Block × source images per segmentation request.")
    iqa_batch_blocks: int = Field(8, ge=1, description="Block × source images per IQA request.")
    device: str | None = Field(None, description="torch device for the models (default: cuda when available).")
    torch_threads: int | None = Field(
        None, ge=1, description="torch threads of the model stages on CPUs (default: all of the machine's or node's "
        "CPUs). Float sums depend on it in the last bits: runs to be compared bit for bit should use one value.",
    )


class AnnotatorConfig(StrictModel):
    """How the simulated annotator departs from the world's truth (a person is not perfect either)."""

    min_field_m2: float = Field(0.0, ge=0, description="Fields smaller than this (true ground m²) are not drawn.")
    shift_px: int = Field(0, ge=0, le=8, description="Boundaries drawn this many pixels off.")


class StopThresholds(StrictModel):
    """The active-learning stop criteria per province (the paper's, Sect. 3.2.4; a team may ask for more)."""

    iou: float = Field(0.85, ge=0, le=1)
    semantic_correctness: float = Field(0.85, ge=0, le=1)
    pcs: float = Field(0.80, ge=0, description="One-sided: mapped cropland at least this share of the reference.")
    waiver_min_poor_imagery_share: float = Field(0.3, ge=0, le=1, description="The paper's exception (a PCS "
                                                 "below its threshold waived after 3 extra rounds) applies only "
                                                 "to a province with at least this share of blocks whose every "
                                                 "source IQA judges Cloudy, Snow/Ice or Nodata.")  # fmt: skip


SELECTION_COMPONENTS = ("error", "uncertainty", "disagreement")  # the scores the combined strategy ranks
DEFAULT_DIVERSITY_FEATURES = (
    *(f"{s}_{f}" for s in ("a", "b") for f in ("area_fraction", "solidity_mean", "edge_density_m_per_ha",
                                                 "sharpness", "hue_median", "saturation_median", "lightness_median")),
    "elevation_median", "slope_median_deg",
)  # fmt: skip


class GivenKeysModel(StrictModel):
    """Dumps only the keys that were given (the defaults are the code's): a saved config (a run's config.yaml, a
    campaign's) says what its user chose, as the plain dict the selection settings once were did."""

    @model_serializer(mode="wrap")
    def _given_only(self, handler):
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}


class ComponentWeights(GivenKeysModel):
    """Weights of the rank-normalised scores in the combined score (0 leaves a score out)."""

    error: float = Field(1.0, ge=0)
    uncertainty: float = Field(1.0, ge=0)
    disagreement: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _some_weight(self):
        if not any(getattr(self, c) > 0 for c in SELECTION_COMPONENTS):
            raise ValueError(f"at least one of the weights {', '.join(SELECTION_COMPONENTS)} must be above 0")
        return self


class SelectionSettings(GivenKeysModel):
    """How a round's blocks are chosen (mapper.al.select); the defaults are the project's, documented field by
    field."""

    random_share: float = Field(0.2, ge=0, le=1, description="share of combined picks drawn at random (over the "
                                "campaign's rounds, not rounded per round)")  # fmt: skip
    negative_share: float = Field(
        0.3, ge=0, le=1,
        description="share of combined picks from the negative candidates (over the campaign's rounds); the "
                    "paper's labels were two thirds negative, and error picks (FP blocks) bring more negatives on "
                    "top of this quota",
    )  # fmt: skip
    negative_max_cropland_fraction: float = Field(
        0.02, ge=0, le=1, description="final-map cropland fraction at or below which a block is a negative candidate"
    )
    negative_fp_max_cropland_fraction: float = Field(
        0.1, ge=0, le=1,
        description="a block a usable source is judged FP in is a negative candidate only when its final-map "
                    "cropland fraction is at or below this: FP covers omission (fields missed) too, so an FP "
                    "judgement alone may mean a cropland-rich block",
    )  # fmt: skip
    weights: ComponentWeights = Field(default_factory=ComponentWeights)
    pcs_threshold: float = Field(StopThresholds().pcs, gt=0, description="PCS below which a province weighs more")
    pcs_weight: float = Field(2.0, ge=0, description="extra error weight of a province at PCS 0 (linear to 0 at T)")
    min_distance_km: float = Field(10.0, ge=0, description="least ground distance between picks and labelled blocks")
    shortlist_factor: int = Field(10, ge=1, description="k-center chooses among this many times k best-scored blocks")
    shortlist_share: float = Field(
        0.25, gt=0, le=1,
        description="and among at most this share of the free candidates (but at least k), so that on a small "
                    "pool the shortlist is not the whole pool and the scores still matter",
    )  # fmt: skip
    diversity_features: tuple[str, ...] = Field(DEFAULT_DIVERSITY_FEATURES, min_length=1)

    @model_validator(mode="after")
    def _shares_fit(self):
        if self.random_share + self.negative_share > 1:
            raise ValueError(f"random_share + negative_share is {self.random_share + self.negative_share:g}; "
                             "it must be at most 1")  # fmt: skip
        return self


def _strategy_names() -> tuple[str, ...]:
    # The strategies register themselves in mapper.al.strategies (one module each). It is imported by name, when
    # a config is validated, so that mapper.config stays below mapper.al in the import graph.
    import importlib

    return importlib.import_module("mapper.al.strategies").strategy_names()


class AlConfig(StrictModel):
    """Label campaigns (`mapper al`): the samples, the rounds, retraining and acceptance."""

    strategy: str = Field("combined", description="A selection strategy of mapper.al.strategies.")
    round_blocks: int = Field(4, ge=1, description="Blocks selected for labelling per round.")
    pool_blocks: int = Field(24, ge=1, description="Candidate pool: a spread sample of this many blocks.")
    validation_blocks: int = Field(8, ge=1, description="The fixed validation sample (never selected).")
    decision_blocks: int = Field(8, ge=2, description="The fixed sample the decision models are retrained on "
                                 "(never selected, never used to train segmentation).")
    max_rounds: int = Field(10, ge=1, description="`loop --until-stop` ends after this many rounds anyway.")
    seed: int = Field(0, ge=0, description="Seeds the samples and the random parts of selection.")
    finetune_config: Path | None = Field(None, description="A SegTrainConfig YAML for the fine-tunes "
                                         "(default: the packaged configs/train_seg_finetune.yaml).")
    finetune_steps: int | None = Field(None, ge=1, description="Overrides the fine-tune recipe's steps.")
    recent_weight: float | None = Field(None, gt=0, description="Overrides the recipe's weight of the newest "
                                        "round's blocks.")
    base_labels: list[Path] = Field(default_factory=list, description="Labelled blocks the starting segmentation "
                                    "learnt from (e.g. `mapper labels make` of its training world): fine-tunes use "
                                    "them beside the campaign's labels, so the model adapts without forgetting.")
    decision_update_trees: int = Field(20, ge=1, description="Trees added to each decision model per round when "
                                       "the decision sample is small (continued boosting).")
    decision_retrain_blocks: int = Field(100, ge=2, description="A decision sample of at least this many blocks "
                                         "trains the decision models anew instead.")
    acceptance_tolerance: float = Field(0.0, ge=0, le=0.1, description="A new model is adopted when none of "
                                        "its validation IoU, semantic correctness and closeness of PCS to 1 is "
                                        "below the current one's by more than this or the current one's 95 % "
                                        "interval half-width, whichever is larger, and one is higher "
                                        "(mapper.al.verdict.accept).")
    selection: SelectionSettings = SelectionSettings()
    stop: StopThresholds = StopThresholds()
    stop_rule: Literal["point", "lower_bound"] = Field("lower_bound", description="How a province's numbers "
                                                       "meet the stop thresholds: lower_bound, the lower end of "
                                                       "their 95 % interval (a small validation sample must "
                                                       "show it); point, the values themselves (the paper's).")
    annotator: AnnotatorConfig = AnnotatorConfig()

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, strategy: str) -> str:
        known = _strategy_names()
        if strategy not in known:
            raise ValueError(f"unknown selection strategy {strategy!r}; known: {', '.join(known)}")
        return strategy


class CropTypeS2Config(StrictModel):
    """Where the crop-type stage gets Sentinel-2 L2A: the simulated world, or a user's downloaded files."""

    kind: Literal["world", "files"] = "world"
    paths: list[Path] = Field(default_factory=list, description="Files or folders of L2A GeoTIFFs (kind files): "
                              "one file per date, one per band with dates as layers, or a dates × bands stack.")
    bands: list[str] | None = Field(None, description="Layer names of files that do not name their bands.")
    dates_file: Path | None = Field(None, description="One YYYY-MM-DD per line, for files without dates.")


class CropTypeConfig(StrictModel):
    """The crop-type stage of a run (`mapper croptype map`, or `mapper run` with enabled: true)."""

    enabled: bool = Field(False, description="`mapper run` also maps crop types after each block's final mask.")
    model: str = Field("croptype-default", description="A crop-type model directory or packaged model name.")
    s2: CropTypeS2Config = CropTypeS2Config()
    unit: Literal["parcel", "pixel", "field"] = Field("pixel", description="Classify every 10 m field pixel's "
                                                      "own series (pixel: the map keeps each pixel's crop, a field "
                                                      "polygon its pixels' commonest), each field delineated at "
                                                      "10 m from the series' mean (parcel), or each field of the "
                                                      "run's `fields` stage (field: the 2 m pieces of "
                                                      "fields/blocks/<block>.tif, each the mean of its pure 10 m "
                                                      "pixels; needs `mapper fields RUN` or fields.enabled). "
                                                      "Pixel is the default: the map's cropland polygons are not "
                                                      "fields, and on the demo run it agrees with the truth on 77 % "
                                                      "of the area at level 4 against 54 % (~45× the inferences: a "
                                                      "GPU job at CropNet's width 128, seconds a block at width 32).")
    min_cropland_share: float = Field(0.5, gt=0, le=1, description="A 10 m pixel of the crop-type map is "
                                      "cropland when at least this share of its 2 m final-mask pixels are.")
    batch_parcels: int = Field(4096, ge=1, description="Parcels per inference batch.")
    device: str | None = Field(None, description="torch device (default: cuda when available).")


class FieldsConfig(StrictModel):
    """The fields stage of a run (`mapper fields RUN`, or `mapper run` with enabled: true): field instances at 2 m
    inside each block's final cropland, stitched into one polygon per field (fiboa)."""

    enabled: bool = Field(False, description="`mapper run` also delineates fields after each block's final mask.")
    model: str = Field("fields-default", description="A field model: checkpoint directory, packaged model name, "
                       "or `baseline` (the classical delineator, no weights).")
    min_area_ha: float = Field(0.02, gt=0, description="Stitched fields smaller than this (true ground area) are "
                               "slivers and left out of the polygons (0.02 ha: ~40 z16 pixels in southern China).")
    device: str | None = Field(None, description="torch device (default: cuda when available).")


class MapperConfig(StrictModel):
    zoom: int = Field(16, ge=10, le=19)
    sources: dict[str, AnySourceConfig]
    source_sets: dict[str, list[str]] = Field(
        {}, description="Named pairs of sources, e.g. demo: [demo-a, demo-b]; the first is 'source A'."
    )
    cache: CacheConfig = CacheConfig()
    mosaic: MosaicConfig = MosaicConfig()
    world: WorldConfig = WorldConfig()
    run: RunConfig = RunConfig()
    al: AlConfig = AlConfig()
    croptype: CropTypeConfig = CropTypeConfig()
    fields: FieldsConfig = FieldsConfig()

    @model_validator(mode="after")
    def _sets_name_sources(self):
        for name, members in self.source_sets.items():
            unknown = [m for m in members if m not in self.sources]
            if unknown:
                raise ValueError(f"source set {name!r} names unknown sources {unknown}")
        return self

    def simulated(self, sources: Iterable[str]) -> bool:
        """Whether every one of these sources (names) is the simulated world, whose truth is known."""
        return all(name in self.sources and self.sources[name].simulated for name in sources)

    def resolve_sources(self, name: str) -> list[str]:
        """Source names for a source or a source set ('demo' -> ['demo-a', 'demo-b'])."""
        names = [n.strip() for n in name.split(",") if n.strip()]
        out: list[str] = []
        for n in names:
            if n in self.source_sets:
                out += self.source_sets[n]
            elif n in self.sources:
                out.append(n)
            else:
                known = sorted(set(self.sources) | set(self.source_sets))
                raise ConfigError(f"unknown source {n!r}; configured sources: {', '.join(known)}")
        return out


class ConfigError(ValueError):
    pass


class MissingTokenError(ConfigError):
    def __init__(self, env_var: str):
        super().__init__(
            f"the access token is missing: set the environment variable {env_var} "
            f"(e.g. `export {env_var}=...`) before running; it is read from the environment only"
        )
        self.env_var = env_var
