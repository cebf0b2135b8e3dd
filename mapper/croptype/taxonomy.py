"""The four-level crop taxonomy (H2Crop's idea at a smaller size): a table of leaf classes, each with its
path level 1 → level 4 and the flags the statistics allocation orders crops by.

The table is a CSV, one row per leaf: `code` (a stable positive integer, what rasters store), `level1` …
`level4` (class names), `perennial`, `specific` (a named crop, not "other …") and `cropped` (false for
fallow: cropland without a crop this year). A name may repeat across rows only where the rows share the
path above it: a level-3 class belongs to exactly one level-2 class, and so on. The packaged table has
5 → 11 → 17 → 25 classes.
"""

from __future__ import annotations

import csv
import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

LEVELS = 4
COLUMNS = ("code", "level1", "level2", "level3", "level4", "perennial", "specific", "cropped")
PACKAGED = "croptype/taxonomy.csv"


class TaxonomyError(ValueError):
    """A taxonomy table is malformed; the message names the row and the fix."""


@dataclass(frozen=True, eq=False)  # equal tables have equal sha256
class Taxonomy:
    codes: tuple[int, ...]  # leaf codes, table order
    names: tuple[tuple[str, ...], ...]  # per level: class names in first-seen order
    paths: np.ndarray  # (n_leaves, 4) int64: the class index at each level of every leaf
    perennial: np.ndarray  # (n_leaves,) bool
    specific: np.ndarray
    cropped: np.ndarray
    sha256: str  # of the table's normalised text: checkpoints carry it

    @property
    def n_leaves(self) -> int:
        return len(self.codes)

    def n_classes(self, level: int) -> int:
        return len(self.names[level])

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(n) for n in self.names)

    def leaf_names(self) -> tuple[str, ...]:
        return self.names[LEVELS - 1]

    def leaf_index(self, code: int) -> int:
        return self.codes.index(int(code))

    def code_of(self, name: str) -> int:
        return self.codes[self.names[LEVELS - 1].index(name)]

    def code_array(self) -> np.ndarray:
        return np.asarray(self.codes, np.int64)

    def levels_of_leaves(self, leaf: np.ndarray) -> np.ndarray:
        """(N,) leaf indices -> (N, 4) class indices per level."""
        return self.paths[np.asarray(leaf, np.int64)]

    def parent(self, level: int) -> np.ndarray:
        """For level ≥ 1: the index of each class's parent at level - 1."""
        out = np.full(self.n_classes(level), -1, np.int64)
        out[self.paths[:, level]] = self.paths[:, level - 1]
        return out

    def to_table(self) -> list[dict]:
        return [
            {
                "code": c,
                **{f"level{lv + 1}": self.names[lv][self.paths[i, lv]] for lv in range(LEVELS)},
                "perennial": bool(self.perennial[i]),
                "specific": bool(self.specific[i]),
                "cropped": bool(self.cropped[i]),
            }
            for i, c in enumerate(self.codes)
        ]

    def describe(self) -> dict:
        """What a checkpoint stores: the table itself and its hash."""
        return {"sha256": self.sha256, "sizes": list(self.sizes), "table": self.to_table()}


def _flag(value: str, where: str, column: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise TaxonomyError(f"{where}: {column} is {value!r}; write true or false")


def parse_rows(rows: list[dict], source: str) -> Taxonomy:
    """Check a table's rows and build the taxonomy. Every failure names the row and what to change."""
    if not rows:
        raise TaxonomyError(f"{source} has no rows; a taxonomy needs at least one leaf class")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        raise TaxonomyError(f"{source} lacks column(s) {', '.join(missing)}; the header must be {','.join(COLUMNS)}")
    names: list[list[str]] = [[] for _ in range(LEVELS)]
    parent_of: list[dict[str, str]] = [{} for _ in range(LEVELS)]
    codes, paths, flags, leaves = [], [], [], set()
    for n, row in enumerate(rows, start=2):  # row 1 is the header
        where = f"{source} line {n}"
        try:
            code = int(row["code"])
        except (TypeError, ValueError):
            raise TaxonomyError(f"{where}: code {row['code']!r} is not an integer") from None
        if code <= 0 or code > 255:
            raise TaxonomyError(f"{where}: code {code} must be 1..255 (0 is nodata in crop-type rasters)")
        if code in codes:
            raise TaxonomyError(f"{where}: code {code} is used twice; every leaf needs its own code")
        path = [(row[f"level{lv + 1}"] or "").strip() for lv in range(LEVELS)]
        if not all(path):
            raise TaxonomyError(f"{where}: an empty class name; every leaf names all four levels")
        if path[-1] in leaves:
            raise TaxonomyError(f"{where}: leaf {path[-1]!r} appears twice; a leaf is one row")
        for lv in range(1, LEVELS):
            seen = parent_of[lv].setdefault(path[lv], path[lv - 1])
            if seen != path[lv - 1]:
                raise TaxonomyError(
                    f"{where}: level-{lv + 1} class {path[lv]!r} is under {path[lv - 1]!r} here but under "
                    f"{seen!r} in an earlier row; a class has one parent — rename one of them"
                )
        for lv in range(LEVELS):
            if path[lv] not in names[lv]:
                names[lv].append(path[lv])
        leaves.add(path[-1])
        codes.append(code)
        paths.append([names[lv].index(path[lv]) for lv in range(LEVELS)])
        flags.append([_flag(row[c], where, c) for c in ("perennial", "specific", "cropped")])
    text = "\n".join(",".join(str(r[c]).strip().lower() for c in COLUMNS) for r in rows)
    f = np.asarray(flags, bool)
    return Taxonomy(
        codes=tuple(codes),
        names=tuple(tuple(n) for n in names),
        paths=np.asarray(paths, np.int64),
        perennial=f[:, 0],
        specific=f[:, 1],
        cropped=f[:, 2],
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def read_taxonomy(path: Path | str) -> Taxonomy:
    path = Path(path)
    if not path.is_file():
        raise TaxonomyError(f"taxonomy table {path} not found; pass a CSV with columns {','.join(COLUMNS)}")
    with open(path, newline="", encoding="utf-8") as f:
        return parse_rows(list(csv.DictReader(f)), str(path))


def flat_rows(labels, cropped=None) -> list[dict]:
    """A flat class list as taxonomy rows: each label is its own path at all four levels (the hierarchical
    heads then all learn the same classes, so one model kind serves both), codes 1… in list order, perennial
    false, specific true, cropped as given (default true)."""
    flags = [True] * len(labels) if cropped is None else cropped
    return [{"code": str(i), **{f"level{lv + 1}": name for lv in range(LEVELS)}, "perennial": "false",
             "specific": "true", "cropped": str(flag)}
            for i, (name, flag) in enumerate(zip(labels, flags, strict=True), start=1)]  # fmt: skip


def read_class_list(path: Path | str) -> Taxonomy:
    """A flat class list CSV: a `label` column (one class a row) and an optional `cropped` (true/false, 1/0:
    false for land that is not a crop — built-up, water, forest — so crop-only accuracy can be reported)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "label" not in rows[0]:
        raise TaxonomyError(f"{path}: a class list needs a `label` column and one row per class")
    labels = [(r["label"] or "").strip() for r in rows]
    for n, name in enumerate(labels, start=2):
        if not name:
            raise TaxonomyError(f"{path} line {n}: an empty label; every class needs a name")
    if len(labels) > 255:
        raise TaxonomyError(f"{path}: {len(labels)} classes; crop-type rasters code at most 255")
    cropped = None
    if "cropped" in rows[0]:
        cropped = [_flag(r["cropped"] or "", f"{path} line {n}", "cropped") for n, r in enumerate(rows, start=2)]
    return parse_rows(flat_rows(labels, cropped), str(path))


def is_flat(taxonomy: Taxonomy) -> bool:
    """Whether every level holds the same classes as the leaves (a class list read by read_class_list)."""
    return all((taxonomy.paths[:, lv] == taxonomy.paths[:, -1]).all() for lv in range(LEVELS))


def from_description(desc: dict) -> Taxonomy:
    """The taxonomy a checkpoint stored (see Taxonomy.describe)."""
    rows = [{k: str(v).lower() if isinstance(v, bool) else v for k, v in r.items()} for r in desc["table"]]
    return parse_rows(rows, "checkpoint taxonomy")


@functools.cache
def packaged_taxonomy() -> Taxonomy:
    with resources.as_file(resources.files("mapper.data") / PACKAGED) as p:
        return read_taxonomy(p)
