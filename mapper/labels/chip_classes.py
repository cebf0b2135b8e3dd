"""Class maps: which values (or colours) of a land-cover mask become cropland, not cropland, or ignore.

A `ClassMap` sends every *source* value of a dataset's mask to mapper's convention (1 cropland, 0 not
cropland, 255 ignore). Keys are class indices (ints) or, for colour-coded masks, RGB colours. **Every value
found in a mask must be mapped**: an unmapped value is an error naming the file, the values and their pixel
counts, never a silent "not cropland" (a class we did not expect is a question for a person, not a guess).

Three ways to build one:

- value lists (`from_values`): `--cropland-values`, `--not-values`, `--ignore-values`, each a list of values
  or ranges ("4,5,6", "0-3,7-14"). Defaults 1 / 0 / 255, so masks already in mapper's convention import as
  they are and any other value is an error. Giving a list replaces that list's default only; a default never
  claims a value another list names (`--cropland-values 0` leaves 0 out of the default not-values).
- a CSV file (`from_csv`), header `value,class[,name]`: `value` an integer class index or a colour
  `#RRGGBB`; `class` one of `cropland`, `not` (or `not cropland`), `ignore` (or 1 / 0 / 255).
- a preset (`PRESETS`), for the public datasets below.

How a mask is read (`ClassMap.apply`): a one-band mask by its values (a palette PNG by its palette index, not
its colours); a three-band mask by its colours, after `colour_threshold` when the dataset asks for it. Where
a map knows both a dataset's numbering and its colours (gid15, gid5) and a palette mask's colours are all the
dataset's, the two must agree, or the import stops: converters renumber classes but keep the colours, and a
renumbered mask read by index would be mislabelled without a word. A palette mask with a colours-only map is
read by its palette colours.

Presets (class lists from the datasets' papers and repositories; cropland is what each calls farmland):

- `gid15` — GID-15 (Tong et al. 2020, Remote Sensing of Environment 237:111322; chips as published in
  XiangtaoZheng/GID-MTL "GID-MTL15"): indices 0 industrial land, 1 urban residential, 2 rural residential,
  3 traffic land, 4 paddy field, 5 irrigated land, 6 dry cropland, 7 garden plot, 8 arbor woodland, 9 shrub
  land, 10 natural grassland, 11 artificial grassland, 12 river, 13 lake, 14 pond, 15 unlabelled, and GID-15's
  colours (200,0,0) … (0,200,250), unlabelled black. Cropland = 4, 5, 6; ignore = 15. Garden plot (orchards,
  tea) is not cropland here, as in the project's `gid15/cropland/` masks.
- `gid5` — GID large-scale classification, 5 classes (Tong et al. 2020): colours built-up (255,0,0), farmland
  (0,255,0), forest (0,255,255), meadow (255,255,0), water (0,0,255), unlabelled (0,0,0) — GID publishes its
  masks as these RGB colours. Index masks: *assumed* 0 unlabelled, 1 built-up, 2 farmland, 3 forest, 4 meadow,
  5 water, the order of the widely used conversion (mmsegmentation's GID dataset, classes "Others, Built-up,
  Farmland, Forest, Meadow, Water"). GID-MTL5 palette PNGs may number differently (GID-MTL15 puts unlabelled
  last): not verified against GID-MTL5 files. A palette mask numbered otherwise stops with the palette check
  above; a plain (palette-less) index mask numbered otherwise is not detectable and needs `--class-map`.
- `loveda` — LoveDA (Wang et al. 2021, NeurIPS Datasets and Benchmarks; github Junjue-Wang/LoveDA): 0 no-data,
  1 background, 2 building, 3 road, 4 water, 5 barren, 6 forest, 7 agriculture. Cropland = 7, ignore = 0.
  Published as one-band PNG masks (0.3 m imagery).
- `deepglobe` — DeepGlobe 2018 Land Cover (Demir et al. 2018, CVPR Workshops): RGB colour masks, urban
  (0,255,255), agriculture (255,255,0), rangeland (255,0,255), forest (0,255,0), water (0,0,255), barren
  (255,255,255), unknown (0,0,0). The challenge says mask values "may not be pure 0 and 255" and to binarise
  each channel at 128, which the preset does. Cropland = agriculture (it includes orchards, vineyards,
  nurseries and confined feeding operations); ignore = unknown (clouds and others). Files `N_sat.jpg`,
  `N_mask.png` (0.5 m imagery).
- `openearthmap` — OpenEarthMap (Xia et al. 2023, WACV; open-earth-map.org): 0 unknown, 1 bareland,
  2 rangeland, 3 developed space, 4 road, 5 tree, 6 water, 7 agriculture land, 8 building. Cropland = 7,
  ignore = 0. One-band GeoTIFF masks (0.25-0.5 m imagery).

A preset's pixel size is only a hint in messages: `--gsd` is always declared by whoever imports.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mapper.labels.store import CROPLAND, IGNORE, NOT_CROPLAND, LabelError

CLASS_WORDS = {"cropland": CROPLAND, "crop": CROPLAND, "1": CROPLAND, "not": NOT_CROPLAND,
               "not cropland": NOT_CROPLAND, "not_cropland": NOT_CROPLAND, "0": NOT_CROPLAND,
               "ignore": IGNORE, "255": IGNORE}  # fmt: skip
CLASS_NAMES = {CROPLAND: "cropland", NOT_CROPLAND: "not_cropland", IGNORE: "ignore"}
_HEX = re.compile(r"^#([0-9A-Fa-f]{6})$")


def colour_code(rgb) -> int:
    r, g, b = (int(c) for c in rgb)
    return (r << 16) | (g << 8) | b


def colour_text(code: int) -> str:
    return f"#{code:06x}"


@dataclass(frozen=True)
class ClassMap:
    """Source value -> 0/1/255 for index masks (`values`) and/or colour masks (`colours`, keyed by
    `colour_code`). `names`: optional class names by key ("4" or "#ffff00")."""

    source: str  # "values", "file PATH", "preset NAME": recorded in each chip's label.json
    values: dict[int, int] = field(default_factory=dict)
    colours: dict[int, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    colour_threshold: int | None = None  # binarise each channel at this value before looking colours up

    @property
    def described(self) -> str:
        return "the value options" if self.source == "values" else self.source

    def to_json(self) -> dict:
        """The map as label.json records it (JSON-native, so a re-import compares equal after a round trip)."""
        keys = [*sorted(self.values.items()), *((colour_text(k), c) for k, c in sorted(self.colours.items()))]
        out: dict = {"source": self.source}
        for cls in (CROPLAND, NOT_CROPLAND, IGNORE):
            ints = [k for k, c in keys if c == cls and isinstance(k, int)]
            out[CLASS_NAMES[cls]] = [*_runs(ints), *(k for k, c in keys if c == cls and isinstance(k, str))]
        if self.names:
            out["names"] = dict(self.names)
        if self.colour_threshold is not None:
            out["colour_threshold"] = self.colour_threshold
        return out

    def apply(self, mask: np.ndarray, palette: np.ndarray | None, what: str) -> np.ndarray:
        """The mask in mapper's convention; LabelError naming `what`, each unmapped value and its pixel count.

        mask: (H, W) integer values or (H, W, 3) uint8 colours; palette: (N, 3) colours of a palette mask."""
        if mask.ndim == 3:
            if not self.colours:
                raise LabelError(
                    f"{what} is a colour (RGB) mask but the class map ({self.described}) maps class values: use a "
                    "preset for the dataset, or a --class-map CSV with #RRGGBB values"
                )
            return self._lookup_colours(mask, what)
        if self.values:
            out = _lookup(mask, self.values, str, what, self.described)
            if palette is not None and self.colours:
                self._check_palette(mask, palette, what)
            return out
        if palette is not None and self.colours:
            return self._lookup_colours(_palette_colours(mask, palette, what), what)
        raise LabelError(
            f"{what} is a one-band mask but the class map ({self.described}) maps colours only: give the "
            "mask as RGB colours, or a --class-map CSV with class values"
        )

    def _check_palette(self, mask: np.ndarray, palette: np.ndarray, what: str) -> None:
        """A palette mask is read by its index; where the map knows the dataset's colours too, they must agree:
        a converter that renumbered the classes (but kept the colours) would otherwise mislabel silently."""
        used = np.unique(mask)
        codes = self._codes(_palette_colours(used, palette, what))
        if not all(int(c) in self.colours for c in codes):
            return  # display colours of someone's own: nothing to compare with
        wrong = [f"index {int(v)} is coloured {colour_text(int(c))} ({CLASS_NAMES[self.colours[int(c)]]}) but "
                 f"numbered as {CLASS_NAMES[self.values[int(v)]]}"
                 for v, c in zip(used, codes, strict=True) if self.colours[int(c)] != self.values[int(v)]]  # fmt: skip
        if wrong:
            raise LabelError(
                f"{what}: its palette colours contradict the class numbering of {self.described}: {'; '.join(wrong)}. "
                "These masks number their classes differently: give a --class-map CSV with their numbering"
            )

    def _codes(self, rgb: np.ndarray) -> np.ndarray:
        rgb = rgb.astype(np.uint32)
        if self.colour_threshold is not None:
            rgb = np.where(rgb >= self.colour_threshold, 255, 0).astype(np.uint32)
        return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]

    def _lookup_colours(self, rgb: np.ndarray, what: str) -> np.ndarray:
        return _lookup(self._codes(rgb), self.colours, colour_text, what, self.described)


def _palette_colours(idx: np.ndarray, palette: np.ndarray, what: str) -> np.ndarray:
    idx = idx.astype(np.intp)
    if idx.max(initial=0) >= len(palette):
        raise LabelError(f"{what}: palette index {idx.max()} beyond its {len(palette)}-colour palette")
    return palette[idx]


def _runs(values: list[int]) -> list:
    """Sorted ints with runs of 3 or more as "lo-hi" (a range option stays short in label.json)."""
    out: list = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out += [f"{values[i]}-{values[j]}"] if j - i >= 2 else values[i : j + 1]
        i = j + 1
    return out


def _lookup(keys: np.ndarray, table: dict[int, int], show, what: str, source: str) -> np.ndarray:
    found, inverse, counts = np.unique(keys.ravel(), return_inverse=True, return_counts=True)
    missing = [(int(v), int(n)) for v, n in zip(found, counts, strict=True) if int(v) not in table]
    if missing:
        listed = ", ".join(f"{show(v)} ({n:,} px)" for v, n in missing[:12])
        more = f" and {len(missing) - 12} more" if len(missing) > 12 else ""
        raise UnmappedValues(
            f"{what} has values the class map ({source}) does not map: {listed}{more}",
            [show(v) for v, _ in missing],
        )
    classes = np.array([table[int(v)] for v in found], np.uint8)
    return classes[inverse].reshape(keys.shape)


class UnmappedValues(LabelError):
    """A mask holds values outside the class map; `values` lets the caller suggest the fix for all files."""

    def __init__(self, message: str, values: list[str]):
        super().__init__(message)
        self.values = values


# ------------------------------------------------------------------------------------------ building maps
def parse_values(text: str, what: str) -> list[int]:
    """'4,5,6' or '0-3, 7-14' -> the integers; LabelError naming the option otherwise."""
    out: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise LabelError(f"{what}: {part!r} is not a value or a range of values (e.g. 4,5,6 or 0-3,7-14)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo or hi - lo > 65535:
            raise LabelError(f"{what}: the range {part!r} is empty or too long")
        out += range(lo, hi + 1)
    return out


def from_values(cropland: str | None, not_cropland: str | None, ignore: str | None) -> ClassMap:
    """The map of the value options (see the module docstring: defaults 1 / 0 / 255, nothing else allowed)."""
    lists = {
        CROPLAND: ("--cropland-values", cropland, "1"),
        NOT_CROPLAND: ("--not-values", not_cropland, "0"),
        IGNORE: ("--ignore-values", ignore, "255"),
    }
    explicit = {cls: parse_values(text, opt) for cls, (opt, text, _) in lists.items() if text is not None}
    claimed = {v for vals in explicit.values() for v in vals}
    table: dict[int, int] = {}
    for cls, (opt, text, default) in lists.items():
        vals = explicit[cls] if text is not None else [v for v in parse_values(default, opt) if v not in claimed]
        for v in vals:
            if v in table and table[v] != cls:
                raise LabelError(f"value {v} is given as both {CLASS_NAMES[table[v]]} and {CLASS_NAMES[cls]}")
            table[v] = cls
    return ClassMap("values", values=table)


def from_csv(path: Path | str) -> ClassMap:
    """A class-map CSV (header value,class[,name]; see the module docstring)."""
    path = Path(path)
    fix = "the class map is a CSV with a header line value,class[,name], e.g. `4,cropland,paddy field`"
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise LabelError(f"cannot read the class map {path}: {e}; {fix}") from None
    if not rows or not {"value", "class"} <= {(k or "").strip().lower() for k in rows[0]}:
        raise LabelError(f"{path} has no rows or no value and class columns; {fix}")
    values: dict[int, int] = {}
    colours: dict[int, int] = {}
    names: dict[str, str] = {}
    for n, raw in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        where = f"{path} line {n}"
        cls = CLASS_WORDS.get(row["class"].lower())
        if cls is None:
            raise LabelError(f"{where}: class {row['class']!r} is not cropland, not or ignore")
        text = row["value"]
        if m := _HEX.match(text):
            table, key, shown = colours, int(m.group(1), 16), text.lower()
        elif text.isdigit():
            table, key, shown = values, int(text), text
        else:
            raise LabelError(f"{where}: value {text!r} is not a class index (integer) or a colour #RRGGBB")
        if key in table and table[key] != cls:
            raise LabelError(f"{where}: value {text} is mapped twice, to {CLASS_NAMES[table[key]]} and "
                             f"{CLASS_NAMES[cls]}")  # fmt: skip
        table[key] = cls
        if row.get("name"):
            names[shown] = row["name"]
    return ClassMap(f"file {path.resolve()}", values=values, colours=colours, names=names)


# --------------------------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    name: str
    dataset: str  # the default --dataset
    classes: tuple  # (value, colour or None, name, class): value None for a colour-only class
    gsd_hint: str
    colour_threshold: int | None = None
    index_classes: bool = True  # False: the dataset has colour masks only

    def class_map(self) -> ClassMap:
        values = {v: c for v, _, _, c in self.classes if v is not None and self.index_classes}
        colours = {colour_code(rgb): c for _, rgb, _, c in self.classes if rgb is not None}
        names = {}
        for v, rgb, name, _ in self.classes:
            if v is not None and self.index_classes:
                names[str(v)] = name
            if rgb is not None:
                names[colour_text(colour_code(rgb))] = name
        return ClassMap(f"preset {self.name}", values, colours, names, self.colour_threshold)


C, N, I = CROPLAND, NOT_CROPLAND, IGNORE  # noqa: E741 (short names keep the class tables readable)
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("gid15", "GID-15", (
            (0, (200, 0, 0), "industrial land", N), (1, (250, 0, 150), "urban residential", N),
            (2, (200, 150, 150), "rural residential", N), (3, (250, 150, 150), "traffic land", N),
            (4, (0, 200, 0), "paddy field", C), (5, (150, 250, 0), "irrigated land", C),
            (6, (150, 200, 150), "dry cropland", C), (7, (200, 0, 200), "garden plot", N),
            (8, (150, 0, 250), "arbor woodland", N), (9, (150, 150, 250), "shrub land", N),
            (10, (250, 200, 0), "natural grassland", N), (11, (200, 200, 0), "artificial grassland", N),
            (12, (0, 0, 200), "river", N), (13, (0, 150, 200), "lake", N), (14, (0, 200, 250), "pond", N),
            (15, (0, 0, 0), "unlabelled", I),
        ), "4 m (Gaofen-2 multispectral)"),
        Preset("gid5", "GID-5", (
            (0, (0, 0, 0), "unlabelled", I), (1, (255, 0, 0), "built-up", N), (2, (0, 255, 0), "farmland", C),
            (3, (0, 255, 255), "forest", N), (4, (255, 255, 0), "meadow", N), (5, (0, 0, 255), "water", N),
        ), "4 m (Gaofen-2 multispectral)"),
        Preset("loveda", "LoveDA", (
            (0, None, "no-data", I), (1, None, "background", N), (2, None, "building", N), (3, None, "road", N),
            (4, None, "water", N), (5, None, "barren", N), (6, None, "forest", N), (7, None, "agriculture", C),
        ), "0.3 m"),
        Preset("deepglobe", "DeepGlobe Land Cover", (
            (None, (0, 255, 255), "urban", N), (None, (255, 255, 0), "agriculture", C),
            (None, (255, 0, 255), "rangeland", N), (None, (0, 255, 0), "forest", N),
            (None, (0, 0, 255), "water", N), (None, (255, 255, 255), "barren", N),
            (None, (0, 0, 0), "unknown", I),
        ), "0.5 m", colour_threshold=128, index_classes=False),
        Preset("openearthmap", "OpenEarthMap", (
            (0, None, "unknown", I), (1, None, "bareland", N), (2, None, "rangeland", N),
            (3, None, "developed space", N), (4, None, "road", N), (5, None, "tree", N), (6, None, "water", N),
            (7, None, "agriculture land", C), (8, None, "building", N),
        ), "0.25-0.5 m"),
    )
}  # fmt: skip


def preset(name: str) -> Preset:
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise LabelError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)} (or give --class-map FILE)")
    return PRESETS[key]
