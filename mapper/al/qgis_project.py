"""The QGIS project of a round (`round.qgz`), written as plain XML without QGIS.

    write_project(path, vectors, rasters, extent, title)     a .qgz (zip of one .qgs) beside its data

Only what QGIS 3.22 needs to open every layer valid: the project CRS (EPSG:3857), the layers with their
data sources relative to the project (`./labels.gpkg|layername=cropland`), each vector layer's style (the
same elements as its QML in the GeoPackage), a layer tree (label layers on top, one group of images per
source), the map canvas and default view extent (the blocks), and relative paths.
"""

from __future__ import annotations

import io
import uuid
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mapper.al.qgis_style import DOCTYPE, QGIS_VERSION, sub
from mapper.store.atomic import atomic_write_bytes

_SRS = {
    "proj4": "+proj=merc +a=6378137 +b=6378137 +lat_ts=0 +lon_0=0 +x_0=0 +y_0=0 +k=1 +units=m +nadgrids=@null "
    "+wktext +no_defs",
    "srsid": "3857",
    "srid": "3857",
    "authid": "EPSG:3857",
    "description": "WGS 84 / Pseudo-Mercator",
    "projectionacronym": "merc",
    "ellipsoidacronym": "EPSG:7030",
    "geographicflag": "false",
}


@dataclass
class VectorLayer:
    name: str
    source: str  # relative to the project, e.g. "./labels.gpkg|layername=cropland"
    style: list[ET.Element] = field(default_factory=list)
    wkb_type: str = "MultiPolygon"


@dataclass
class RasterLayer:
    name: str
    source: str  # relative to the project, e.g. "./images/5886_2256_a.tif"
    group: str  # the layer-tree group it is listed in (one per source)


def _srs(parent: ET.Element) -> None:
    ref = sub(parent, "spatialrefsys")
    for k, v in _SRS.items():
        sub(ref, k, v)


def _extent(parent: ET.Element, tag: str, extent: Sequence[float]) -> None:
    el = sub(parent, tag)
    for k, v in zip(("xmin", "ymin", "xmax", "ymax"), extent, strict=True):
        sub(el, k, repr(float(v)))


def _layer_id(name: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in name)
    return f"{safe}_{uuid.uuid4().hex[:12]}"


def _map_layer(parent: ET.Element, kind: str, lid: str, name: str, source: str) -> ET.Element:
    ml = sub(parent, "maplayer", type=kind, styleCategories="AllStyleCategories", hasScaleBasedVisibilityFlag="0")
    sub(ml, "id", lid)
    sub(ml, "datasource", source)
    sub(ml, "layername", name)
    _srs(sub(ml, "srs"))
    return ml


def _vector(parent: ET.Element, lid: str, layer: VectorLayer) -> None:
    ml = _map_layer(parent, "vector", lid, layer.name, layer.source)
    ml.set("geometry", "Polygon")
    ml.set("wkbType", layer.wkb_type)
    ml.set("readOnly", "0")
    sub(ml, "provider", "ogr", encoding="UTF-8")
    ml.extend(layer.style)


def _raster(parent: ET.Element, lid: str, layer: RasterLayer) -> None:
    ml = _map_layer(parent, "raster", lid, layer.name, layer.source)
    sub(ml, "provider", "gdal")
    pipe = sub(ml, "pipe")
    # The mosaics are 8-bit RGB: shown as they are, no contrast stretch (the labeller sees the model's input).
    renderer = sub(pipe, "rasterrenderer", type="multibandcolor", opacity="1", alphaBand="-1", redBand="1",
                   greenBand="2", blueBand="3", nodataColor="")  # fmt: skip
    sub(renderer, "rasterTransparency")
    for band in ("red", "green", "blue"):
        enh = sub(renderer, f"{band}ContrastEnhancement")
        sub(enh, "minValue", "0")
        sub(enh, "maxValue", "255")
        sub(enh, "algorithm", "NoEnhancement")
    sub(pipe, "rasterresampler", maxOversampling="2")


def _tree_layer(parent: ET.Element, lid: str, name: str, source: str, provider: str, checked: bool) -> None:
    sub(parent, "layer-tree-layer", id=lid, name=name, source=source, providerKey=provider, expanded="1",
        checked="Qt::Checked" if checked else "Qt::Unchecked")  # fmt: skip


def project_xml(
    vectors: Sequence[VectorLayer], rasters: Sequence[RasterLayer], extent: Sequence[float], title: str = ""
) -> str:
    """The .qgs document. `extent`: (xmin, ymin, xmax, ymax) in EPSG:3857, the view the project opens at."""
    root = ET.Element("qgis", {"version": QGIS_VERSION, "projectname": title})
    sub(root, "homePath", path="")
    sub(root, "title", title)
    _srs(sub(root, "projectCrs"))
    ids_v = [_layer_id(v.name) for v in vectors]
    ids_r = [_layer_id(r.name) for r in rasters]

    tree = sub(root, "layer-tree-group")
    for lid, v in zip(ids_v, vectors, strict=True):
        _tree_layer(tree, lid, v.name, v.source, "ogr", True)
    groups: dict[str, ET.Element] = {}
    for lid, r in zip(ids_r, rasters, strict=True):
        if r.group not in groups:  # the first source's images are shown, the others a click away
            groups[r.group] = sub(tree, "layer-tree-group", name=r.group, expanded="1",
                                  checked="Qt::Checked" if not groups else "Qt::Unchecked")  # fmt: skip
        _tree_layer(groups[r.group], lid, r.name, r.source, "gdal", True)

    canvas = sub(root, "mapcanvas", name="theMapCanvas", annotationsVisible="1")
    sub(canvas, "units", "meters")
    _extent(canvas, "extent", extent)
    sub(canvas, "rotation", "0")
    _srs(sub(canvas, "destinationsrs"))

    layers = sub(root, "projectlayers")
    for lid, v in zip(ids_v, vectors, strict=True):
        _vector(layers, lid, v)
    for lid, r in zip(ids_r, rasters, strict=True):
        _raster(layers, lid, r)

    props = sub(root, "properties")
    sub(sub(props, "Paths"), "Absolute", "false", type="bool")
    sub(sub(props, "SpatialRefSys"), "ProjectionsEnabled", "1", type="int")
    view = sub(root, "ProjectViewSettings", UseProjectScales="0", rotation="0")
    sub(view, "Scales")
    corners = dict(zip(("xmin", "ymin", "xmax", "ymax"), (repr(float(v)) for v in extent), strict=True))
    default = sub(view, "DefaultViewExtent", **corners)
    _srs(default)
    ET.indent(root)
    return DOCTYPE + "\n" + ET.tostring(root, encoding="unicode") + "\n"


def write_project(
    path: Path | str,
    vectors: Sequence[VectorLayer],
    rasters: Sequence[RasterLayer],
    extent: Sequence[float],
    title: str = "",
) -> Path:
    """`path` (.qgz): a zip holding `<stem>.qgs`, the layers' sources relative to the .qgz's folder."""
    path = Path(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{path.stem}.qgs", project_xml(vectors, rasters, extent, title))
    atomic_write_bytes(path, buf.getvalue())
    return path
