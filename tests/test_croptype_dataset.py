"""Parcel and pixel datasets of the world: a window's pure pixels average to its parcels' series, and a
dataset survives a save/load round trip unchanged (no pickle)."""

import numpy as np
import pytest

from mapper.croptype.dataset import DatasetError, load_dataset, save_dataset, simulate_dataset
from mapper.croptype.taxonomy import packaged_taxonomy
from mapper.world.world import get_world


@pytest.fixture(scope="module")
def both():
    world = get_world(0)
    parcels = simulate_dataset(world, "Henan", 1, window_km=0.6, seed=5)
    pixels = simulate_dataset(world, "Henan", 1, window_km=0.6, seed=5, unit="pixel", max_pixels_per_window=10**6)
    return parcels, pixels


def test_pixels_average_to_their_parcels(both):
    parcels, pixels = both
    assert len(parcels) > 10 and len(pixels) > len(parcels)
    by_parcel = dict(zip(parcels.parcels["parcel"], parcels.series, strict=True))
    for pid, group in pixels.parcels.groupby("parcel"):
        mean = pixels.series[group.index.to_numpy()].mean(axis=0)
        np.testing.assert_allclose(mean, by_parcel[pid], atol=1e-5)
    codes = parcels.parcels.set_index("parcel")["code"]
    assert (pixels.parcels["code"].to_numpy() == codes.loc[pixels.parcels["parcel"]].to_numpy()).all()


def test_dataset_round_trip_and_damage(both, tmp_path):
    parcels, _ = both
    save_dataset(parcels, tmp_path / "ds")
    back = load_dataset(tmp_path / "ds")
    assert np.array_equal(back.series, parcels.series) and back.bands == parcels.bands
    assert np.array_equal(back.leaves(packaged_taxonomy()), parcels.leaves(packaged_taxonomy()))
    (tmp_path / "ds" / "series.npy").unlink()
    with pytest.raises(DatasetError, match=r"missing series\.npy"):
        load_dataset(tmp_path / "ds")
