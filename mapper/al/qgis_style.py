"""QGIS styles of a round's two label layers, written as plain XML (exporting never needs QGIS).

    layer_style(layer) -> list[Element]       the style elements of "cropland" or "blocks" (renderer, widgets)
    qml_document(elements) -> str             the same as a .qml document (what QGIS keeps in `layer_styles`)
    write_gpkg_styles(gpkg, {layer: qml})     the GeoPackage's `layer_styles` table, each the layer's default

The layout follows what QGIS 3.22 itself writes (`QgsVectorLayer.saveStyleToDatabase`, `QgsProject.write`):
a categorised renderer (`renderer-v2 type="categorizedSymbol"`) of fill symbols whose SimpleFill layer
carries its properties twice, as `<Option>` (read by QGIS ≥ 3.20) and as legacy `<prop>`; value-map edit
widgets and default values per field. The test opens the result in real QGIS.
"""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

QGIS_VERSION = "3.22.0-Białowieża"  # the oldest QGIS the files are checked against
DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"

# value -> (label, fill colour RGBA or None for no fill, fill style, outline colour, outline width mm)
CLASS_STYLE = {
    1: ("1 cropland", "40,200,40,90", "solid", "0,130,0,255", 0.3),
    0: ("0 not cropland", None, "no", "230,30,30,255", 0.6),
    255: ("255 ignore (cannot tell)", "120,120,120,255", "b_diagonal", "110,110,110,255", 0.4),
}
STATUS_STYLE = {
    "todo": ("todo", None, "no", "255,215,0,255", 0.9),
    "done": ("done", None, "no", "40,200,40,255", 0.9),
    "negative": ("negative (no cropland)", None, "no", "230,30,30,255", 0.9),
    "skip": ("skip", None, "no", "150,150,150,255", 0.9),
}


def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs) -> ET.Element:
    """A child element; attribute names that are Python keywords are given with a trailing underscore."""
    el = ET.SubElement(parent, tag, {k.rstrip("_"): str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def _option_map(parent: ET.Element, values: dict[str, str]) -> None:
    opt = sub(parent, "Option", type="Map")
    for k, v in values.items():
        sub(opt, "Option", name=k, value=v, type="QString")
    for k, v in values.items():
        sub(parent, "prop", k=k, v=v)


def _fill_symbol(parent: ET.Element, name: str, fill: str | None, style: str, outline: str, width: float) -> None:
    symbol = sub(parent, "symbol", name=name, type="fill", alpha="1", clip_to_extent="1", force_rhr="0")
    layer = sub(symbol, "layer", class_="SimpleFill", enabled="1", locked="0", pass_="0")
    _option_map(
        layer,
        {
            "color": fill or "0,0,0,0",
            "style": style,
            "outline_color": outline,
            "outline_style": "solid",
            "outline_width": f"{width:g}",
            "outline_width_unit": "MM",
            "joinstyle": "miter",
        },
    )


def _categorized(attr: str, styles: dict) -> ET.Element:
    renderer = ET.Element(
        "renderer-v2",
        {"type": "categorizedSymbol", "attr": attr, "forceraster": "0", "symbollevels": "0", "enableorderby": "0"},
    )
    cats = sub(renderer, "categories")
    symbols = sub(renderer, "symbols")
    for i, (value, (label, *sym)) in enumerate(styles.items()):
        sub(cats, "category", value=value, symbol=i, label=label, render="true")
        _fill_symbol(symbols, str(i), *sym)
    return renderer


def _value_map(parent: ET.Element, field: str, items: dict[str, object], kind: str) -> None:
    f = sub(parent, "field", name=field, configurationFlags="None")
    widget = sub(f, "editWidget", type="ValueMap")
    cfg = sub(sub(widget, "config"), "Option", type="Map")
    listing = sub(cfg, "Option", name="map", type="List")
    for label, value in items.items():
        sub(sub(listing, "Option", type="Map"), "Option", name=label, value=value, type=kind)


def _fields(widgets: list[tuple[str, dict, str]], defaults: dict[str, str]) -> list[ET.Element]:
    config = ET.Element("fieldConfiguration")
    for field, items, kind in widgets:
        _value_map(config, field, items, kind)
    default = ET.Element("defaults")
    for field, expression in defaults.items():
        sub(default, "default", field=field, expression=expression, applyOnUpdate="0")
    return [config, default]


def layer_style(layer: str) -> list[ET.Element]:
    """The style elements of one of the round's layers ("cropland" or "blocks")."""
    if layer == "cropland":
        classes = {label: value for value, (label, *_) in CLASS_STYLE.items()}
        # A new polygon is cropland in the block it is drawn in unless the labeller says otherwise.
        block_default = "array_first(overlay_intersects('blocks', \"block_id\"))"
        return [
            _categorized("class", CLASS_STYLE),
            *_fields([("class", classes, "int")], {"class": "1", "block_id": block_default}),
        ]
    if layer == "blocks":
        statuses = {label: value for value, (label, *_) in STATUS_STYLE.items()}
        return [_categorized("status", STATUS_STYLE), *_fields([("status", statuses, "QString")], {})]
    raise ValueError(f"no style for layer {layer!r}; the round's layers are 'cropland' and 'blocks'")


def qml_document(elements: list[ET.Element]) -> str:
    root = ET.Element("qgis", {"version": QGIS_VERSION, "styleCategories": "AllStyleCategories"})
    root.extend(elements)
    ET.indent(root)
    return DOCTYPE + "\n" + ET.tostring(root, encoding="unicode") + "\n"


# The table exactly as QGIS 3.22 creates it (QgsOgrProviderUtils, GeoPackage).
_STYLES_TABLE = (
    'CREATE TABLE IF NOT EXISTS "layer_styles" ( "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, '
    '"f_table_catalog" TEXT(256), "f_table_schema" TEXT(256), "f_table_name" TEXT(256), '
    '"f_geometry_column" TEXT(256), "styleName" TEXT(30), "styleQML" TEXT, "styleSLD" TEXT, '
    '"useAsDefault" BOOLEAN, "description" TEXT, "owner" TEXT(30), "ui" TEXT(30), '
    "\"update_time\" DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
)


def write_gpkg_styles(gpkg: Path | str, qml: dict[str, str], geometry_column: str = "geom") -> None:
    """Each layer's QML as its default style in the GeoPackage's `layer_styles` table (replacing earlier
    defaults), registered in gpkg_contents as an attributes table as QGIS does, so QGIS applies the style
    whenever the layer is added from the file."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    con = sqlite3.connect(gpkg)
    try:
        with con:
            con.execute(_STYLES_TABLE)
            con.execute(
                "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description, last_change, "
                "srs_id) VALUES ('layer_styles', 'attributes', 'layer_styles', '', ?, 0)",
                (now,),
            )
            for layer, text in qml.items():
                con.execute("DELETE FROM layer_styles WHERE f_table_name = ? AND useAsDefault", (layer,))
                con.execute(
                    "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
                    "styleName, styleQML, styleSLD, useAsDefault, description, owner, ui, update_time) "
                    "VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '', NULL, ?)",
                    (layer, geometry_column, layer, text, f"mapper: the {layer} layer of a label round", now),
                )
    finally:
        con.close()
