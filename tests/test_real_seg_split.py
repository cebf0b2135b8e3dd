"""The gid15 split of benchmarks.real_seg: within each scene class, in manifest order, never at random."""

from __future__ import annotations

import csv

from benchmarks.real_seg import scene_split


def test_each_scene_class_is_split_in_manifest_order(tmp_path):
    manifest = tmp_path / "manifest.csv"
    rows = [(f"{scene}_{i}", scene) for scene, n in (("paddy", 10), ("lake", 20), ("pond", 2)) for i in range(n)]
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "scene"])
        w.writerows(rows)
    split = scene_split(manifest)
    assert [split[f"paddy_{i}"] for i in range(10)] == ["train"] * 7 + ["val"] + ["test"] * 2
    assert [split[f"lake_{i}"] for i in range(20)] == ["train"] * 14 + ["val"] * 2 + ["test"] * 4
    assert [split[f"pond_{i}"] for i in range(2)] == ["train", "train"]  # too few to hold any out
