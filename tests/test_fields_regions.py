"""mapper.fields.regions: labelling, outlines and the seeded watershed, against hand-made cases and scikit-image."""

import numpy as np
import pytest

from mapper.fields.regions import join_pairs, label_regions, merge_weak_boundaries, outline, watershed


def test_label_regions_by_value_4_connected_in_raster_order():
    values = np.array(
        [
            [5, 5, 0, 7],
            [5, 0, 7, 7],
            [9, 5, 5, 0],
        ]
    )
    labels, n = label_regions(values)
    # the 5s at the top left and the 5s at the bottom touch only diagonally: two regions
    assert n == 4
    assert labels.tolist() == [[1, 1, 0, 2], [1, 0, 2, 2], [3, 4, 4, 0]]


def test_label_regions_inside_mask_and_equal_to_skimage_partition():
    from skimage.measure import label

    rng = np.random.default_rng(3)
    values = rng.integers(0, 4, (60, 70))
    inside = rng.random((60, 70)) < 0.8
    labels, n = label_regions(values, inside)
    ref = label(np.where(inside, values + 1, 0), connectivity=1, background=0)
    assert n == ref.max()
    # the same partition: a one-to-one map between the two numberings
    pairs = np.unique(np.column_stack([labels.ravel(), ref.ravel()]), axis=0)
    assert len(pairs) == n + 1 and len(np.unique(pairs[:, 0])) == len(np.unique(pairs[:, 1])) == n + 1
    # numbered by first pixel in raster order
    first = [np.flatnonzero(labels.ravel() == k)[0] for k in range(1, n + 1)]
    assert first == sorted(first)


def test_outline_marks_pixels_next_to_another_value_or_outside():
    values = np.array(
        [
            [1, 1, 1, 0],
            [1, 1, 1, 0],
            [1, 1, 2, 2],
        ]
    )
    ring = outline(values)
    assert ring.astype(int).tolist() == [[0, 0, 1, 0], [0, 0, 1, 0], [0, 1, 1, 1]]
    # the array's edge is not an outline (a padded window sees across it)
    assert not ring[0, 0] and not ring[2, 0]


def test_watershed_equals_scikit_image():
    from skimage.segmentation import watershed as sk_watershed

    rng = np.random.default_rng(0)
    elevation = rng.random((120, 100)).astype(np.float32)
    markers = np.zeros((120, 100), np.int32)
    markers[10, 10], markers[60, 80], markers[100, 30] = 1, 2, 3
    mask = rng.random((120, 100)) < 0.9
    ours = watershed(elevation, markers, mask)
    ref = sk_watershed(elevation, markers, connectivity=1, mask=mask)
    assert (ours == ref).all()


def test_watershed_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="must agree"):
        watershed(np.zeros((3, 3)), np.zeros((3, 4)))


def test_join_pairs_groups_transitively_under_the_smallest_index():
    root = join_pairs(6, np.array([[4, 2], [2, 5], [0, 1]]))
    assert root.tolist() == [0, 0, 2, 3, 2, 2]
    with pytest.raises(ValueError, match=r"0\.\.5"):
        join_pairs(6, np.array([[0, 6]]))


def test_merge_weak_boundaries_joins_only_across_weak_lines():
    labels = np.zeros((6, 9), np.int32)
    labels[:, 0:3], labels[:, 3:6], labels[:, 6:9] = 1, 2, 3
    strength = np.zeros((6, 9), np.float32)
    strength[:, 5:7] = 0.9  # a real boundary between 2 and 3; none between 1 and 2
    merged = merge_weak_boundaries(labels, strength, 0.7)
    assert merged.max() == 2
    assert (merged[:, :6] == 1).all() and (merged[:, 6:] == 2).all()
