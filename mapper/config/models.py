"""The one config system: pydantic models that forbid unknown keys, filled from YAML in configs/."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RetryConfig(StrictModel):
    """urllib3 Retry settings for tile requests."""

    total: int = Field(4, ge=0, le=20)
    backoff_factor: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, gt=0)
    status_forcelist: list[int] = [429, 500, 502, 503, 504]
    respect_retry_after: bool = True


class HttpSourceConfig(StrictModel):
    """Settings shared by every tile source reached over HTTP."""

    attribution: str = ""
    token_env: str | None = Field(
        None, description="Name of the environment variable that holds the access token (never the token)."
    )
    headers: dict[str, str] = {}
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(20.0, gt=0)
    max_concurrency: int = Field(8, ge=1, le=256)
    max_requests_per_second: float | None = Field(None, gt=0)
    retry: RetryConfig = RetryConfig()
    placeholder_sha256: list[str] = Field(
        [], description="sha256 of bodies the server returns instead of imagery ('no imagery' tiles)."
    )
    blank_tile_is_missing: bool = Field(
        True, description="Treat a tile of one uniform colour as a 'no imagery' placeholder."
    )
    max_zoom: int = Field(19, ge=0, le=24)

    def token(self) -> str | None:
        """The token from the environment; fails, naming the variable, when it is unset."""
        if self.token_env is None:
            return None
        value = os.environ.get(self.token_env, "").strip()
        if not value:
            raise MissingTokenError(self.token_env)
        return value


class XYZSourceConfig(HttpSourceConfig):
    kind: Literal["xyz"] = "xyz"
    url: str = Field(description="Template with {z}/{x}/{y} or {quadkey}; {s} for subdomains; {token}.")
    subdomains: list[str] = []

    @field_validator("url")
    @classmethod
    def _has_tile_placeholders(cls, url: str) -> str:
        if "{quadkey}" not in url and not all(p in url for p in ("{z}", "{x}", "{y}")):
            raise ValueError(
                f"URL template {url!r} must contain {{z}}, {{x}} and {{y}} (or {{quadkey}}), "
                "e.g. https://example.com/tiles/{z}/{x}/{y}.jpg"
            )
        return url

    @model_validator(mode="after")
    def _subdomains_used(self):
        if "{s}" in self.url and not self.subdomains:
            raise ValueError("URL template uses {s} but no subdomains are configured")
        return self


class GoogleTilesConfig(HttpSourceConfig):
    """Google Map Tiles API (2D satellite): an API key plus a session token from createSession."""

    kind: Literal["google_tiles"] = "google_tiles"
    token_env: str | None = "GOOGLE_MAPS_API_KEY"
    session_url: str = "https://tile.googleapis.com/v1/createSession"
    tile_url: str = "https://tile.googleapis.com/v1/2dtiles/{z}/{x}/{y}?session={session}&key={token}"
    map_type: Literal["satellite"] = "satellite"
    language: str = "en-US"
    region: str = "US"
    tiles_per_minute: int = Field(6000, ge=1, description="Per-minute quota of the project's API key.")
    tiles_per_day: int = Field(100000, ge=1, description="Daily tile quota; the source stops at it.")


class WorldSourceConfig(StrictModel):
    """The simulated world, rendered in-process (same code path as any other tile source)."""

    kind: Literal["world"] = "world"
    rendering: Literal["a", "b"] = Field(description="Which of the world's two imagery renderings.")
    attribution: str = "mapper simulated world"


class RasterFileSourceConfig(StrictModel):
    """GeoTIFFs (any CRS) warped onto the z-level Web Mercator grid."""

    kind: Literal["raster"] = "raster"
    paths: list[Path]
    bands: list[int] = [1, 2, 3]
    resampling: Literal["nearest", "bilinear", "cubic", "lanczos"] = "bilinear"
    rescale: tuple[float, float] | None = Field(
        None, description="Map this input value range linearly to 0-255 (for non-8-bit rasters)."
    )


SourceConfig = Annotated[
    XYZSourceConfig | GoogleTilesConfig | WorldSourceConfig | RasterFileSourceConfig,
    Field(discriminator="kind"),
]


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


class AlConfig(StrictModel):
    """Label campaigns (`mapper al`): the samples, the rounds, retraining and acceptance."""

    strategy: Literal["random", "error", "uncertainty", "disagreement", "combined"] = "combined"
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
    acceptance_tolerance: float = Field(0.0, ge=0, le=0.1, description="A new model is adopted when its "
                                        "validation IoU is at least the current one's minus this.")
    selection: dict = Field(default_factory=dict, description="mapper.al.select.SelectionSettings fields.")
    stop: StopThresholds = StopThresholds()
    annotator: AnnotatorConfig = AnnotatorConfig()


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
    unit: Literal["parcel", "pixel"] = Field("pixel", description="Classify every 10 m field pixel's own series "
                                             "(pixel: the map keeps each pixel's crop, a field polygon its "
                                             "pixels' commonest) or each delineated field's mean (parcel). "
                                             "Pixel is the default: the map's cropland polygons are not fields, "
                                             "and on the demo run it agrees with the truth on 77 % of the "
                                             "area at level 4 against 54 % (~45× the inferences: a GPU job "
                                             "at CropNet's width 128, seconds a block at width 32).")
    min_cropland_share: float = Field(0.5, gt=0, le=1, description="A 10 m pixel of the crop-type map is "
                                      "cropland when at least this share of its 2 m final-mask pixels are.")
    batch_parcels: int = Field(4096, ge=1, description="Parcels per inference batch.")
    device: str | None = Field(None, description="torch device (default: cuda when available).")


class MapperConfig(StrictModel):
    zoom: int = Field(16, ge=10, le=19)
    sources: dict[str, SourceConfig]
    source_sets: dict[str, list[str]] = Field(
        {}, description="Named pairs of sources, e.g. demo: [demo-a, demo-b]; the first is 'source A'."
    )
    cache: CacheConfig = CacheConfig()
    mosaic: MosaicConfig = MosaicConfig()
    world: WorldConfig = WorldConfig()
    run: RunConfig = RunConfig()
    al: AlConfig = AlConfig()
    croptype: CropTypeConfig = CropTypeConfig()

    @model_validator(mode="after")
    def _sets_name_sources(self):
        for name, members in self.source_sets.items():
            unknown = [m for m in members if m not in self.sources]
            if unknown:
                raise ValueError(f"source set {name!r} names unknown sources {unknown}")
        return self

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
