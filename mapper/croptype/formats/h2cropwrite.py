"""The simulated world in H2Crop's layout (formats.h2crop documents it and its sources): one sample per
sampled window, `h5_data/sample_{k:05d}.h5` with S2_data (12, 10, H, W) int16 — the world's acquisitions
composited onto the twelve calendar months (the world observes May-November; the other months take the
nearest observed month's value, the compositor's edge rule) as reflectance × 10 000, 0 where a pixel has no
clear observation — `label` and `priors` (4, H, W) uint8: the level ids (formats.h2crop.default_ids) of this
year's and last year's crop on pixels lying wholly in one field (the pixels the native datasets sample),
0 elsewhere; EnMAP_data only with with_hyper (`--with-hyper`): the world has no hyperspectral sensor, so the cube
is July's S2_data at 30 m interpolated across 218 band centres (formats.enmap.s2_cube: no information beyond S2).
`data_lists/{train,val,test}.txt` split the samples 70 / 15 / 15 by a hash of the name. The tree is written
under a temporary name and renamed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mapper.croptype import series
from mapper.croptype.formats.h2crop import KEYS, SPLIT_FILES, default_ids, select_pixels
from mapper.croptype.formats.months import ALL_MONTHS
from mapper.croptype.formats.worldexport import NativeSamples, split_of, world_windows
from mapper.croptype.taxonomy import LEVELS, Taxonomy, packaged_taxonomy


def level_ids_of_codes(taxonomy: Taxonomy, ids=None) -> np.ndarray:
    """(256, 4) uint8: for a leaf code its id at each level; row 0 (no crop / unknown) all 0."""
    ids = ids or default_ids(taxonomy)
    out = np.zeros((256, LEVELS), np.uint8)
    for i, code in enumerate(taxonomy.codes):
        out[code] = [ids[lv][taxonomy.names[lv][taxonomy.paths[i, lv]]] for lv in range(LEVELS)]
    return out


def write_sample(path: Path, s2: np.ndarray, label: np.ndarray, priors: np.ndarray, enmap=None, enmap_nm=None) -> None:
    """One sample file; EnMAP_data (and its band centres, an extra key the public loader ignores) when given."""
    import h5py

    from mapper.croptype.formats import enmap as em

    arrays = [(KEYS["s2"], s2), (KEYS["label"], label), (KEYS["prior"], priors)]
    if enmap is not None:
        arrays.append((em.KEY, enmap))
        if enmap_nm is not None:
            arrays.append((em.NM_KEY, np.asarray(enmap_nm, np.float32)))
    with h5py.File(path, "w") as f:
        for key, a in arrays:
            f.create_dataset(key, data=a, compression="gzip", compression_opts=1)


def _window_arrays(win, lut: np.ndarray):
    """(S2_data int16, label, priors) of one window."""
    dn = np.nan_to_num(np.round(win.monthly * series.SCALE), nan=0).clip(0, 32767).astype(np.int16)
    s2 = np.ascontiguousarray(dn.transpose(1, 0, 2, 3))  # (B, T, H, W) -> (T, B, H, W)
    this = np.zeros(win.pure.shape, np.int64)
    last = np.zeros(win.pure.shape, np.int64)
    rows, cols = np.nonzero(win.pure)
    info = [win.sim.fields[int(f)] for f in win.sim.field[rows, cols]]
    this[rows, cols] = [i[0] for i in info]
    last[rows, cols] = [i[1] for i in info]
    return s2, np.moveaxis(lut[this], -1, 0), np.moveaxis(lut[last], -1, 0)


def export_h2crop(world, province: str, out: Path | str, n_windows: int, window_km: float = 1.92, seed: int = 0,
                  max_pixels: int | None = 2000, taxonomy: Taxonomy | None = None, log=lambda msg: None,
                  with_hyper: bool = False):  # fmt: skip
    """Write the windows of a province as an H2Crop tree at `out`; returns (native 43-step dataset, native
    monthly dataset) of the pixels read_h2crop(out, max_pixels=max_pixels, seed=seed) takes. with_hyper: also
    EnMAP_data, the S2-interpolated cube (formats.enmap), so the public *_H_* configs load the tree."""
    from mapper.croptype.formats import enmap as em
    from mapper.store.atomic import atomic_directory

    taxonomy = taxonomy or packaged_taxonomy()
    lut = level_ids_of_codes(taxonomy)
    native = NativeSamples(ALL_MONTHS)
    lists: dict[str, list[str]] = {s: [] for s in SPLIT_FILES}
    with atomic_directory(Path(out)) as tmp:
        (tmp / "h5_data").mkdir()
        (tmp / "data_lists").mkdir()
        for k, win in enumerate(world_windows(world, province, n_windows, window_km, seed, ALL_MONTHS, log)):
            name = f"sample_{k + 1:05d}"
            split = split_of(name)
            s2, label, priors = _window_arrays(win, lut)
            cube = em.s2_cube(s2) if with_hyper else None
            write_sample(tmp / "h5_data" / f"{name}.h5", s2, label, priors, cube, em.ENMAP_NM)
            lists[split].append(name)
            usable = (label[-1] != 0) & (s2 != 0).any(axis=(0, 1))
            rows, cols = select_pixels(usable, max_pixels, seed, name)
            native.add(win, rows, cols, [split] * len(rows))
        for split, fname in SPLIT_FILES.items():
            (tmp / "data_lists" / fname).write_text("".join(f"{n}\n" for n in lists[split]), encoding="utf-8")
    return native.datasets({"kind": "world", "world_seed": world.seed, "province": province, "windows": n_windows,
                            "window_km": window_km, "seed": seed, "exported_as": "h2crop"})  # fmt: skip
