"""`mapper demo preview`: both renderings of a block next to its cropland truth, as one PNG."""

from __future__ import annotations

from pathlib import Path

from mapper.grid.blocks import Block
from mapper.imagery.mosaic import mosaic_block
from mapper.world.landscape import Cover
from mapper.world.source import WorldTileSource
from mapper.world.truth import block_truth
from mapper.world.world import get_world

COVER_COLOURS = {
    Cover.WATER: "#2b6cb0", Cover.ROAD: "#9e9e9e", Cover.VILLAGE: "#c0392b", Cover.FOREST: "#1e5631",
    Cover.ORCHARD: "#8e44ad", Cover.GRASS: "#a3d977", Cover.BARE: "#d2b48c", Cover.CROP: "#f1c40f",
    Cover.FALLOW: "#e67e22", Cover.PADDY: "#16a085", Cover.TERRACE: "#f39c12",
}

def render_preview(block_ids: list[str], out: Path, seed: int = 0, crop_px: int | None = None) -> Path:
    """One row per block: rendering A, rendering B, land cover truth (cropland outlined in the legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    world = get_world(seed)
    cmap = ListedColormap([COVER_COLOURS[c] for c in Cover])
    fig, axes = plt.subplots(len(block_ids), 3, figsize=(15, 5.2 * len(block_ids)), squeeze=False)
    for row, block_id in zip(axes, block_ids, strict=True):
        block = Block.parse(block_id)
        truth = block_truth(world, block)
        view = (slice(0, crop_px), slice(0, crop_px)) if crop_px else (slice(None), slice(None))
        for ax, rendering in zip(row[:2], ("a", "b"), strict=True):
            m = mosaic_block(WorldTileSource(f"demo-{rendering}", seed, rendering), block)
            img = m.rgb.copy()
            img[~m.valid] = (255, 0, 255)  # nodata in magenta so it cannot pass for dark imagery
            ax.imshow(img[view], interpolation="nearest")
            fr = truth.fractions[rendering]
            ax.set_title(
                f"{block_id} rendering {rendering.upper()}: {truth.coverage_name(rendering)}\n"
                f"cloud {fr['cloud']:.0%} snow {fr['snow']:.0%} nodata {fr['nodata']:.0%}",
                fontsize=10,
            )
        row[2].imshow(truth.cover[view], cmap=cmap, vmin=0, vmax=len(Cover) - 1, interpolation="nearest")
        row[2].set_title(
            f"truth: cropland {truth.cropland.mean():.0%} of block, {truth.cropland_m2 / 1e4:,.0f} ha", fontsize=10
        )
        for ax in row:
            ax.set_axis_off()
    handles = [Patch(color=COVER_COLOURS[c], label=c.name.lower()) for c in Cover]
    fig.legend(handles=handles, loc="lower center", ncol=len(Cover), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from mapper.store.atomic import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return out

def sample_block_ids(n: int, seed: int = 0, province: str = "Guangdong") -> list[str]:
    """Blocks that show the world's variety: a clear one, then ones with thick cloud, nodata, haze and
    snow on one of the renderings (first found scanning the province's blocks in a fixed order)."""
    from mapper.grid.admin import resolve_province
    from mapper.grid.region import province_blocks

    world = get_world(seed)
    wanted = ["clear", "cloud", "nodata", "haze", "snow"]
    found: dict[str, str] = {}
    for block_id in province_blocks(resolve_province(province))["block_id"][::7]:
        block = Block.parse(block_id)
        conds = [world.conditions(block, r) for r in ("a", "b")]
        for kind in wanted:
            if kind in found:
                continue
            if kind == "clear":
                hit = all(not (c.cloud or c.snow or c.nodata or c.haze) for c in conds)
            else:
                hit = any(getattr(c, kind) for c in conds)
            if hit and block_id not in found.values():
                found[kind] = block_id
        if len(found) >= min(n, len(wanted)):
            break
    return [found[k] for k in wanted if k in found][:n]
