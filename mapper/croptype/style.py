"""Colours of crop classes, shared by the GeoTIFF colour table, the QGIS style and the report's maps: each
level-1 group has its own colour family (cereals yellow-brown, oilseeds and legumes green, industrial crops
red-purple, vegetables and tubers blue, the rest grey), leaves shaded within it."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

FAMILIES = ("YlOrBr", "Greens", "RdPu", "Blues", "Greys", "Oranges", "Purples")


def leaf_colours(taxonomy) -> dict[int, tuple[int, int, int, int]]:
    """code -> RGBA (0-255) for every leaf; code 0 transparent."""
    from matplotlib import colormaps

    out = {0: (0, 0, 0, 0)}
    for group in range(taxonomy.n_classes(0)):
        leaves = [i for i in range(taxonomy.n_leaves) if taxonomy.paths[i, 0] == group]
        cmap = colormaps[FAMILIES[group % len(FAMILIES)]]
        for k, i in enumerate(leaves):
            x = 0.35 + 0.55 * (k / max(len(leaves) - 1, 1))
            r, g, b, _ = cmap(x)
            out[taxonomy.codes[i]] = (round(255 * r), round(255 * g), round(255 * b), 255)
    return out


def qgis_style(taxonomy, path: Path | str) -> Path:
    """A QGIS layer style (.qml) for crop-type rasters: paletted on band 1 (leaf code) with the leaf names.
    QGIS loads `<raster>.qml` beside a raster automatically."""
    colours = leaf_colours(taxonomy)
    entries = "\n".join(
        f'          <paletteEntry value="{code}" color="#{r:02x}{g:02x}{b:02x}" alpha="255" label={quoteattr(name)}/>'
        for code, name in zip(taxonomy.codes, taxonomy.leaf_names(), strict=True)
        for r, g, b, _ in [colours[code]]
    )
    text = f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
  </pipe>
</qgis>
"""
    from mapper.store.atomic import atomic_write_text

    atomic_write_text(Path(path), text)
    return Path(path)
