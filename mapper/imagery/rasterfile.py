"""A tile source over the user's own GeoTIFFs (any CRS), warped onto the z-level Web Mercator tiles.

The same mosaic code then places these tiles on block grids exactly as it does for web tiles, so local
imagery, the simulated world and Mapbox all reach the models through one path. Files are tried in the
order given; the first file with valid pixels wins where they overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from mapper.config.models import ConfigError, SourceConfig, register_source
from mapper.grid.tilegrid import TILE_SIZE, PixelWindow
from mapper.imagery.tiles import TileKey, TileResult

CRS = "EPSG:3857"


@register_source
class RasterFileSourceConfig(SourceConfig):
    """GeoTIFFs (any CRS) warped onto the z-level Web Mercator grid."""

    kind: Literal["raster"] = "raster"
    paths: list[Path]
    bands: list[int] = Field(default_factory=lambda: [1, 2, 3])
    resampling: Literal["nearest", "bilinear", "cubic", "lanczos"] = "bilinear"
    rescale: tuple[float, float] | None = Field(
        None, description="Map this input value range linearly to 0-255 (for non-8-bit rasters)."
    )

    def open(self, name: str, config) -> RasterFileSource:
        return RasterFileSource(name, self)


class RasterFileSource:
    def __init__(self, name: str, config: RasterFileSourceConfig):
        import rasterio

        self.name = name
        self.config = config
        self._datasets = []
        for path in config.paths:
            path = Path(path).expanduser()
            if not path.exists():
                raise ConfigError(f"source {name!r}: raster file not found: {path}")
            ds = rasterio.open(path)
            if ds.crs is None:
                ds.close()
                raise ConfigError(f"source {name!r}: {path} has no CRS; assign one (e.g. gdal_edit.py -a_srs)")
            missing = [b for b in config.bands if not 1 <= b <= ds.count]
            if missing:
                ds.close()
                raise ConfigError(
                    f"source {name!r}: {path} has {ds.count} band(s), bands {missing} do not exist; "
                    "set `bands:` to three band numbers (red, green, blue)"
                )
            if ds.dtypes[0] != "uint8" and config.rescale is None:
                ds.close()
                raise ConfigError(
                    f"source {name!r}: {path} is {ds.dtypes[0]}, not 8-bit; set `rescale: [low, high]` to map "
                    "its values to 0-255"
                )
            self._datasets.append(ds)
        if len(config.bands) != 3:
            raise ConfigError(f"source {name!r}: `bands` must name three bands (red, green, blue)")
        self._bounds = [self._mercator_bounds(ds) for ds in self._datasets]

    @staticmethod
    def _mercator_bounds(ds):
        from rasterio.warp import transform_bounds

        return transform_bounds(ds.crs, CRS, *ds.bounds, densify_pts=21)

    def get_tiles(self, keys: Iterable[TileKey]) -> dict[TileKey, TileResult]:
        return {key: self._tile(*key) for key in keys}

    def _tile(self, z: int, x: int, y: int) -> TileResult:
        window = PixelWindow(z, x * TILE_SIZE, y * TILE_SIZE, (x + 1) * TILE_SIZE, (y + 1) * TILE_SIZE)
        west, south, east, north = window.mercator_bounds
        rgb = np.zeros((TILE_SIZE, TILE_SIZE, 3), np.uint8)
        valid = np.zeros((TILE_SIZE, TILE_SIZE), bool)
        for ds, (bw, bs, be, bn) in zip(self._datasets, self._bounds, strict=True):
            if be <= west or bw >= east or bn <= south or bs >= north:
                continue
            pixels, mask = self._warp(ds, window)
            take = mask & ~valid
            rgb[take] = pixels[take]
            valid |= take
            if valid.all():
                break
        if not valid.any():
            return TileResult.absent("outside the raster files")
        return TileResult.image(rgb, None if valid.all() else valid)

    def _warp(self, ds, window: PixelWindow):
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        resampling = Resampling[self.config.resampling]
        with WarpedVRT(
            ds, crs=CRS, transform=window.transform, width=TILE_SIZE, height=TILE_SIZE, resampling=resampling
        ) as vrt:
            data = vrt.read(self.config.bands)
            mask = vrt.read_masks(1) > 0
        if self.config.rescale is not None:
            lo, hi = self.config.rescale
            data = np.clip((data.astype(np.float32) - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255)
        return np.moveaxis(data.astype(np.uint8), 0, -1), mask

    def close(self) -> None:
        for ds in self._datasets:
            ds.close()
        self._datasets = []

    def __repr__(self) -> str:
        return f"RasterFileSource({self.name!r}, {len(self.config.paths)} file(s))"
