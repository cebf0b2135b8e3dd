"""`mapper labels import chips`: image/mask pairs -> labelled chips (mapper.labels.import_chips)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from PIL import Image

from mapper.cli.labels import labels
from mapper.labels.chip_classes import PRESETS, from_values, preset
from mapper.labels.chips import read_labelled_chip
from mapper.labels.import_chips import pair_files
from mapper.labels.store import LabelError

GID15 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "gid15"
RNG = np.random.default_rng(7)
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def run(*args):
    return CliRunner().invoke(labels, ["import", "chips", *map(str, args)])


def rgb(h=24, w=32):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def png(path: Path, arr: np.ndarray, mode: str | None = None, palette=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    if palette is not None:
        img.putpalette(palette)
    img.save(path)
    return path


def tif(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=len(bands),
                       dtype=arr.dtype) as dst:  # fmt: skip
        dst.write(bands)
    return path


def mask_of(chip: Path) -> np.ndarray:
    with rasterio.open(chip / "mask.tif") as src:
        return src.read(1)


def nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


def pair(tmp_path: Path, name: str, mask: np.ndarray, image=None, folder="") -> tuple[Path, Path]:
    images, masks = tmp_path / folder / "images", tmp_path / folder / "masks"
    png(images / f"{name}.png", rgb(*mask.shape[:2]) if image is None else image)
    png(masks / f"{name}.png", mask)
    return images, masks


def zero_one_ignore(h=24, w=32) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[:, : w // 2] = 1
    m[:4] = 255
    return m


# ------------------------------------------------------------------------------ the done-when criterion
def _gid_subset() -> list[str]:
    """~40 chips spread over the scene classes, with cropland, with label 15 and the 225-px ones."""
    rows = list(csv.DictReader((GID15 / "manifest.csv").open(encoding="utf-8")))
    chosen = {r["id"] for r in rows if r["width"] != "224" or r["height"] != "224"}
    for scene in sorted({r["scene"] for r in rows}):
        of_scene = [r for r in rows if r["scene"] == scene]
        chosen.update(of_scene[i]["id"] for i in (0, len(of_scene) // 2))
    chosen.update([r["id"] for r in rows if float(r["cropland_fraction"]) > 0][::40])
    chosen.update([r["id"] for r in rows if "15" in r["classes_present"].split()][::60])
    return sorted(chosen)


@pytest.mark.skipif(not GID15.is_dir(), reason=f"the real GID-15 chips are not at {GID15} (shared data)")
def test_gid15_preset_reproduces_the_cropland_masks_bit_for_bit(tmp_path):
    ids = _gid_subset()
    rows = {r["id"]: r for r in csv.DictReader((GID15 / "manifest.csv").open(encoding="utf-8"))}
    assert 30 <= len(ids) <= 50
    assert any(float(rows[i]["cropland_fraction"]) > 0 for i in ids)
    assert any("15" in rows[i]["classes_present"].split() for i in ids)
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
        for i in ids:
            (tmp_path / sub / f"{i}.png").symlink_to(GID15 / sub / f"{i}.png")
    out = tmp_path / "chips"
    res = run("--images", tmp_path / "images", "--masks", tmp_path / "labels", "--preset", "gid15", "--gsd", 4,
              "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"GID-15: {len(ids)} chips written" in res.output
    for i in ids:
        chip = read_labelled_chip(out / i)
        expected = np.asarray(Image.open(GID15 / "cropland" / f"{i}.png"))
        assert chip.mask.dtype == expected.dtype and np.array_equal(chip.mask, expected), i
        assert np.array_equal(chip.rgb, np.asarray(Image.open(GID15 / "images" / f"{i}.png"))), i
        assert chip.valid.all() and chip.gsd_m == 4.0 and chip.meta["dataset"] == "GID-15"


# ------------------------------------------------------------------------------------------ the CLI
def test_defaults_import_masks_in_mappers_convention_png_and_tiff(tmp_path):
    m = zero_one_ignore()
    images, masks = pair(tmp_path, "a", m)
    image_b = rgb()
    tif(images / "b.TIF", image_b)
    tif(masks / "b.tif", 1 - zero_one_ignore().clip(0, 1))
    out = tmp_path / "chips"
    res = run("--images", images, "--masks", masks, "--gsd", "0.5", "--out", out, "--dataset", "farm survey")
    assert res.exit_code == 0, res.output
    assert "farm survey: 2 chips written, 0 already there" in res.output
    a = read_labelled_chip(out / "a")
    assert np.array_equal(a.mask, m) and np.array_equal(a.rgb, np.asarray(Image.open(images / "a.png")))
    b = read_labelled_chip(out / "b")
    assert np.array_equal(b.rgb, image_b) and np.array_equal(b.mask, 1 - zero_one_ignore().clip(0, 1))
    meta = a.meta
    assert meta["origin"] == "import chips" and meta["gsd_m"] == 0.5 and meta["dataset"] == "farm survey"
    assert meta["class_map"] == {"source": "values", "cropland": [1], "not_cropland": [0], "ignore": [255]}
    assert meta["source_files"]["image"] == str((images / "a.png").absolute())
    assert len(meta["source_files"]["sha256"]["mask"]) == 64


def test_default_values_are_exactly_0_1_255(tmp_path):
    m = zero_one_ignore()
    m[0, :3] = 2
    images, masks = pair(tmp_path, "a", m)
    out = tmp_path / "chips"
    res = run("--images", images, "--masks", masks, "--gsd", 1, "--out", out)
    assert res.exit_code == 2
    assert "a.png" in res.output and "2 (3 px)" in res.output and "--not-values 2" in res.output
    assert nothing_written(out)


def test_value_lists_map_and_every_value_must_be_listed(tmp_path):
    m = np.array([[0, 4, 5, 6], [7, 14, 15, 3]], np.uint8).repeat(4, 0).repeat(4, 1)
    images, masks = pair(tmp_path, "a", m)
    out = tmp_path / "chips"
    res = run("--images", images, "--masks", masks, "--gsd", 4, "--out", out, "--cropland-values", "4-6",
              "--ignore-values", "15")  # fmt: skip
    assert res.exit_code == 2 and nothing_written(out)
    assert "7 (16 px)" in res.output and "--not-values 3,7,14" in res.output  # 0 is a default not-value
    res = run("--images", images, "--masks", masks, "--gsd", 4, "--out", out, "--cropland-values", "4-6",
              "--ignore-values", "15", "--not-values", "0-3,7-14")  # fmt: skip
    assert res.exit_code == 0, res.output
    expected = np.array([[0, 1, 1, 1], [0, 0, 255, 0]], np.uint8).repeat(4, 0).repeat(4, 1)
    chip = read_labelled_chip(out / "a")
    assert np.array_equal(chip.mask, expected)
    assert chip.meta["class_map"]["not_cropland"] == ["0-3", "7-14"]


def test_overlapping_value_lists_are_refused():
    with pytest.raises(LabelError, match="value 4 is given as both cropland and ignore"):
        from_values("4", None, "4,255")
    assert from_values("0", None, None).values == {0: 1, 255: 255}  # the default 0 steps aside


def test_class_map_csv_with_names(tmp_path):
    m = np.array([[10, 20], [30, 40]], np.uint8).repeat(8, 0).repeat(8, 1)
    images, masks = pair(tmp_path, "a", m)
    cmap = tmp_path / "classes.csv"
    cmap.write_text("value,class,name\n10,cropland,maize\n20,not,forest\n30,ignore,cloud\n40,0,town\n")
    out = tmp_path / "chips"
    res = run("--images", images, "--masks", masks, "--gsd", 2, "--out", out, "--class-map", cmap)
    assert res.exit_code == 0, res.output
    chip = read_labelled_chip(out / "a")
    assert np.array_equal(chip.mask, np.array([[1, 0], [255, 0]], np.uint8).repeat(8, 0).repeat(8, 1))
    cm = chip.meta["class_map"]
    assert cm["source"] == f"file {cmap.resolve()}" and cm["names"]["10"] == "maize" and cm["ignore"] == [30]
    cmap.write_text("value,class\n10,maybe\n")
    res = run("--images", images, "--masks", masks, "--gsd", 2, "--out", tmp_path / "o2", "--class-map", cmap)
    assert res.exit_code == 2 and "line 2" in res.output and "'maybe'" in res.output


def test_deepglobe_preset_maps_near_pure_colours_in_one_folder(tmp_path):
    folder = tmp_path / "train"
    colours = np.zeros((16, 16, 3), np.uint8)
    colours[:8] = (250, 252, 3)  # agriculture, not quite pure (the challenge binarises at 128)
    colours[8:, :8] = (0, 255, 0)  # forest
    colours[8:, 8:] = (0, 0, 0)  # unknown
    image = rgb(16, 16)
    Image.fromarray(image).save(folder.mkdir() or folder / "119_sat.jpg", quality=95)
    png(folder / "119_mask.png", colours)
    out = tmp_path / "chips"
    res = run("--images", folder, "--masks", folder, "--preset", "deepglobe", "--gsd", 0.5, "--out", out)
    assert res.exit_code == 0, res.output
    chip = read_labelled_chip(out / "119")
    expected = np.full((16, 16), 255, np.uint8)
    expected[:8], expected[8:, :8] = 1, 0
    assert np.array_equal(chip.mask, expected)
    assert np.array_equal(chip.rgb, np.asarray(Image.open(folder / "119_sat.jpg")))
    assert chip.meta["dataset"] == "DeepGlobe Land Cover"
    assert chip.meta["class_map"]["cropland"] == ["#ffff00"] and chip.meta["class_map"]["colour_threshold"] == 128


def test_rgba_alpha_is_no_imagery_and_grey_images_are_refused(tmp_path):
    image = np.dstack([rgb(), np.full((24, 32), 255, np.uint8)])
    image[:, :5, 3] = 0
    images, masks = pair(tmp_path, "a", zero_one_ignore(), image=image)
    out = tmp_path / "chips"
    assert run("--images", images, "--masks", masks, "--gsd", 1, "--out", out).exit_code == 0
    chip = read_labelled_chip(out / "a")
    assert not chip.valid[:, :5].any() and chip.valid[:, 5:].all()
    assert np.array_equal(chip.rgb, image[..., :3]) and np.all(chip.target()[:, :5] == 255)
    images, masks = pair(tmp_path, "g", zero_one_ignore(), image=rgb()[..., 0], folder="grey")
    res = run("--images", images, "--masks", masks, "--gsd", 1, "--out", tmp_path / "o2")
    assert res.exit_code == 2 and "g.png is a L image, not RGB" in res.output


def test_palette_mask_is_read_by_index_and_checked_against_the_dataset_colours(tmp_path):
    m = zero_one_ignore()
    palette = [200, 10, 10, 10, 200, 10] + [0, 0, 0] * 254
    images, masks = pair(tmp_path, "a", m, folder="p")
    png(masks / "a.png", m, "P", palette)
    assert Image.open(masks / "a.png").mode == "P"
    assert run("--images", images, "--masks", masks, "--gsd", 1, "--out", tmp_path / "o").exit_code == 0
    assert np.array_equal(mask_of(tmp_path / "o" / "a"), m)
    # A GID-5 mask numbered with unlabelled last (as GID-MTL15 does) but in GID's colours: caught, not mislabelled.
    gid = np.array([[0, 1], [4, 5]], np.uint8).repeat(8, 0).repeat(8, 1)  # built-up, farmland, water, unlabelled
    pal = [255, 0, 0, 0, 255, 0, 0, 255, 255, 255, 255, 0, 0, 0, 255, 0, 0, 0] + [0, 0, 0] * 250
    images, masks = pair(tmp_path, "b", gid, folder="g")
    png(masks / "b.png", gid, "P", pal)
    res = run("--images", images, "--masks", masks, "--gsd", 4, "--preset", "gid5", "--out", tmp_path / "o5")
    assert res.exit_code == 2 and "b.png" in res.output and "palette colours contradict" in res.output
    assert nothing_written(tmp_path / "o5")


def test_reimport_is_idempotent_and_a_second_folder_adds_chips(tmp_path):
    images, masks = pair(tmp_path, "a", zero_one_ignore(), folder="one")
    pair(tmp_path, "b", zero_one_ignore(), folder="one")
    out = tmp_path / "chips"
    assert run("--images", images, "--masks", masks, "--gsd", 1, "--out", out).exit_code == 0
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    res = run("--images", images, "--masks", masks, "--gsd", 1, "--out", out)
    assert res.exit_code == 0 and "0 chips written, 2 already there" in res.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamp
    images2, masks2 = pair(tmp_path, "c", zero_one_ignore(), folder="two")
    res = run("--images", images2, "--masks", masks2, "--gsd", 1, "--out", out)
    assert res.exit_code == 0 and "1 chips written, 0 already there" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c"]
    # Same id, other content: refused (nothing changes), replaced with --replace.
    png(masks / "a.png", 1 - zero_one_ignore().clip(0, 1))
    res = run("--images", images, "--masks", masks, "--gsd", 1, "--out", out)
    assert res.exit_code == 2 and "a (from a.png: mask file differ)" in res.output and "--replace" in res.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}.items() >= stamp.items()
    res = run("--images", images, "--masks", masks, "--gsd", 1, "--out", out, "--replace")
    assert res.exit_code == 0 and "1 already there, 1 replaced (a)" in res.output
    assert np.array_equal(mask_of(out / "a"), 1 - zero_one_ignore().clip(0, 1))
    res = run("--images", images, "--masks", masks, "--gsd", 2, "--out", out, "--id-prefix", "v2-")
    assert res.exit_code == 0 and (out / "v2-a").is_dir() and (out / "a").is_dir()


def test_a_mask_that_labels_nothing_is_left_out(tmp_path):
    images, masks = pair(tmp_path, "a", np.full((8, 8), 255, np.uint8))
    pair(tmp_path, "b", zero_one_ignore())
    res = run("--images", images, "--masks", masks, "--gsd", 1, "--out", tmp_path / "o")
    assert res.exit_code == 0 and "1 chips written" in res.output and "1 with no labelled pixel left out" in res.output
    assert not (tmp_path / "o" / "a").exists()


def test_pairing_by_stem_with_mask_suffixes_and_any_case(tmp_path):
    for name in ("x.PNG", "y.jpeg", "z_sat.tif", "w_rgb.jpg"):
        (tmp_path / "i").mkdir(exist_ok=True)
        (tmp_path / "i" / name).touch()
    for name in ("x_mask.png", "y-label.Png", "z.TIFF", "notes.txt", "w_rgb.png"):
        (tmp_path / "m").mkdir(exist_ok=True)
        (tmp_path / "m" / name).touch()
    pairs = pair_files(tmp_path / "i", tmp_path / "m")
    assert [(p.key, p.image.name, p.mask.name) for p in pairs] == [
        ("w_rgb", "w_rgb.jpg", "w_rgb.png"), ("x", "x.PNG", "x_mask.png"), ("y", "y.jpeg", "y-label.Png"),
        ("z", "z_sat.tif", "z.TIFF")]  # fmt: skip
    (tmp_path / "i" / "x.tif").touch()
    with pytest.raises(LabelError, match=re.escape("two image files for one chip: x.PNG and x.tif")):
        pair_files(tmp_path / "i", tmp_path / "m")


def test_presets_cover_the_documented_datasets():
    assert set(PRESETS) == {"gid15", "gid5", "loveda", "deepglobe", "openearthmap"}
    gid = preset("gid15").class_map().values
    assert [v for v, c in gid.items() if c == 1] == [4, 5, 6] and gid[15] == 255 and gid[7] == 0
    assert preset("LoveDA").class_map().values == {0: 255, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 1}
    assert preset("openearthmap").class_map().values[7] == 1 and preset("openearthmap").class_map().values[0] == 255
    assert preset("gid5").class_map().values == {0: 255, 1: 0, 2: 1, 3: 0, 4: 0, 5: 0}
    assert json.loads(json.dumps(preset("gid5").class_map().to_json()))["cropland"] == [2, "#00ff00"]


# ------------------------------------------------------------------------------------------ bad input
def _bad_cases(tmp_path):
    m = zero_one_ignore()
    images, masks = pair(tmp_path, "a", m)
    png(images / "big.png", rgb(30, 40))
    png(masks / "big.png", np.zeros((24, 32), np.uint8))
    lonely_i, lonely_m = pair(tmp_path, "ok", m, folder="lonely")
    for i in range(12):
        png(lonely_i / f"only_image_{i}.png", rgb(4, 4))
    png(lonely_m / "only_mask.png", m)
    empty = tmp_path / "empty"
    empty.mkdir()
    ok_i, ok_m = pair(tmp_path, "ok", m, folder="fine")
    common = ["--out", tmp_path / "out"]
    return {
        "size mismatch": ([*common, "--images", images, "--masks", masks, "--gsd", 1],
                          ["big.png is 40 × 30 px", "big.png is 32 × 24 px"]),
        "unpaired files": ([*common, "--images", lonely_i, "--masks", lonely_m, "--gsd", 1],
                           ["12 image(s)", "only_image_0.png", "and 2 more", "1 mask(s)", "only_mask.png"]),
        "unknown preset": ([*common, "--images", ok_i, "--masks", ok_m, "--gsd", 1, "--preset", "gid24"],
                           ["'gid24'", "gid15, gid5, loveda, deepglobe, openearthmap"]),
        "missing gsd": ([*common, "--images", ok_i, "--masks", ok_m], ["--gsd is missing"]),
        "missing gsd with preset": ([*common, "--images", ok_i, "--masks", ok_m, "--preset", "loveda"],
                                    ["--gsd is missing", "LoveDA documents 0.3 m"]),
        "absurd gsd": ([*common, "--images", ok_i, "--masks", ok_m, "--gsd", 4000], ["not a plausible pixel size"]),
        "empty folder": ([*common, "--images", empty, "--masks", ok_m, "--gsd", 1], ["no images", str(empty)]),
        "no mask folder": ([*common, "--images", ok_i, "--masks", tmp_path / "nope", "--gsd", 1],
                           ["--masks", "is not a folder"]),
        "two class maps": ([*common, "--images", ok_i, "--masks", ok_m, "--gsd", 1, "--preset", "gid15",
                            "--cropland-values", "3"], ["not the value options and --preset"]),
    }  # fmt: skip


CASES = ["size mismatch", "unpaired files", "unknown preset", "missing gsd", "missing gsd with preset", "absurd gsd",
         "empty folder", "no mask folder", "two class maps"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_naming_the_file_and_writing_nothing(tmp_path, case):
    args, needles = _bad_cases(tmp_path)[case]
    res = run(*args)
    assert res.exit_code == 2, res.output
    for needle in needles:
        assert needle in res.output, (needle, res.output)
    assert nothing_written(tmp_path / "out")
