"""Equations 1-7 of the allocation (mapper.allocate.core) on small grids computed by hand."""

import numpy as np
import pytest

from mapper.allocate.core import (
    AllocationProblem,
    allocate,
    crop_order,
    max_harvested_area,
    proportional_allocation,
)


def problem(area, cap, prob, stat, perennial=None, specific=None, unit=None):
    prob = np.asarray(prob, float)
    n, j = prob.shape
    stat = np.atleast_2d(np.asarray(stat, float))
    return AllocationProblem(
        unit=np.zeros(n, np.int64) if unit is None else np.asarray(unit),
        area_ha=np.asarray(area, float),
        cap_ha=np.asarray(cap, float),
        prob=prob,
        stat_ha=stat,
        perennial=np.zeros(j, bool) if perennial is None else np.asarray(perennial),
        specific=np.ones(j, bool) if specific is None else np.asarray(specific),
    )


def test_eq1_distributes_the_statistic_by_probability_times_area():
    # Σ Prob·Area = 0.5·10 + 0.25·20 + 0·30 = 10, so AdjProb = 12/10 · Prob and CropArea = [6, 6, 0]
    a = allocate(problem([10, 20, 30], [100, 100, 100], [[0.5], [0.25], [0.0]], [12]))
    np.testing.assert_allclose(a.area_ha[:, 0], [6.0, 6.0, 0.0])
    np.testing.assert_allclose(a.by_step_ha[0, 0], [12.0, 0.0, 0.0])
    assert a.unplaced_ha[0, 0] == 0


def test_eq2_cap_is_cropland_times_intensity_times_area():
    np.testing.assert_allclose(max_harvested_area([0.5, 0.2, 0.0], [2, 1, 2], [10, 50, 7]), [10.0, 10.0, 0.0])


def test_eq3_to_5_a_full_cell_withholds_the_crop_and_eq5_places_it_by_probability():
    # crop A (stat 9) first: [3, 3, 3]. Crop B (stat 6, prob [1, 1, 0]): want [3, 3, 0]; piece 0 would reach
    # 6 > cap 4, so it takes none (eq. 4: StatLeft = 3); eq. 5 over the open pieces with room by probability:
    # only piece 1 has B's probability, room 10 - 6 = 4 ≥ 3, so B = [0, 6, 0].
    a = allocate(problem([10, 10, 10], [4, 10, 10], [[1, 1], [1, 1], [1, 0]], [9, 6]))
    np.testing.assert_allclose(a.area_ha[:, 0], [3, 3, 3])
    np.testing.assert_allclose(a.area_ha[:, 1], [0, 6, 0])
    np.testing.assert_allclose(a.by_step_ha[0, 1], [3, 3, 0])


def test_eq6_places_what_eq5_cannot_by_the_room_left():
    # as above with cap [4, 7, 10]: B's first pass gives piece 1 its 3 (6 ≤ 7), piece 0 withholds 3; eq. 5
    # gives piece 1 min(3, room 1) = 1; eq. 6 spreads the last 2 by room left: piece 0 has 1 (closed, but
    # rest space), piece 2 has 7 → 2·1/8 and 2·7/8.
    a = allocate(problem([10, 10, 10], [4, 7, 10], [[1, 1], [1, 1], [1, 0]], [9, 6]))
    np.testing.assert_allclose(a.area_ha[:, 1], [0.25, 4.0, 1.75])
    np.testing.assert_allclose(a.by_step_ha[0, 1], [3.0, 1.0, 2.0])
    assert (a.area_ha.sum(1) <= np.array([4, 7, 10]) + 1e-12).all()


def test_a_closed_cell_takes_no_later_crop_in_the_first_pass():
    # A closes piece 0 (want 6 > cap 5); C (later, smaller) would fit in piece 0's room but is withheld there
    # (LeftCrop_i holds A and every crop after it) and goes to the open piece 1 by eq. 5.
    a = allocate(problem([10, 10], [5, 20], [[1, 1], [1, 0.0001]], [12, 1]))
    assert a.area_ha[0, 1] == pytest.approx(0.0)
    assert a.area_ha[1, 1] == pytest.approx(1.0)


def test_eq7_and_unit_totals_equal_the_statistics_when_capacity_suffices():
    rng = np.random.default_rng(3)
    n, j, k = 400, 12, 7
    unit = rng.integers(0, k, n)
    area = rng.uniform(100, 3000, n)
    cap = area * rng.uniform(0, 1.6, n)
    prob = rng.uniform(0, 1, (n, j)) * (rng.uniform(size=(n, j)) < 0.6)
    perennial = np.arange(j) < 2
    cap_of_unit = np.bincount(unit, cap, k)
    stat = rng.uniform(0, 1, (k, j)) * (rng.uniform(size=(k, j)) < 0.8)
    stat *= (0.9 * cap_of_unit / stat[:, ~perennial].sum(1))[:, None]  # annual crops fill 90 % of the cap
    p = AllocationProblem(unit, area, cap, prob, stat, perennial, rng.uniform(size=j) < 0.7)
    a = allocate(p)
    got = a.allocated_ha(unit, k)
    has_prob = np.stack([np.bincount(unit, prob[:, c], k) for c in range(j)], 1) > 0
    placeable = ~perennial[None, :] | has_prob  # a perennial crop without probability cannot be placed
    np.testing.assert_allclose(got[placeable], stat[placeable], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a.unplaced_ha[placeable], 0.0, atol=1e-6)
    annual = a.area_ha[:, ~perennial].sum(1)
    assert (annual <= cap * (1 + 1e-9) + 1e-9).all()  # no cell over its cap
    np.testing.assert_array_equal(allocate(p).area_ha, a.area_ha)  # deterministic


def test_over_capacity_is_placed_up_to_the_cap_and_the_rest_reported():
    a = allocate(problem([10, 10], [4, 6], [[1], [1]], [15]))
    np.testing.assert_allclose(a.area_ha[:, 0], [4, 6])
    assert a.unplaced_ha[0, 0] == pytest.approx(5.0)


def test_perennial_crops_are_outside_the_cropland_cap():
    # the orchard-like crop lands where there is no cropland at all and does not use the annual crop's cap
    a = allocate(problem([10, 10], [0, 5], [[1, 0], [1, 1]], [8, 5], perennial=[True, False]))
    np.testing.assert_allclose(a.area_ha[:, 0], [4, 4])
    np.testing.assert_allclose(a.area_ha[:, 1], [0, 5])
    assert a.unplaced_ha.sum() == 0


def test_crop_order_perennial_then_specific_then_by_statistic():
    stat = np.array([[5.0, 50.0, 20.0, 30.0, 0.0, 1.0]])
    perennial = np.array([False, False, False, False, False, True])
    specific = np.array([True, False, True, True, True, True])
    # perennial 5; specific annual by statistic: 3 (30), 2 (20), 0 (5); general: 1; crop 4 has none
    np.testing.assert_array_equal(crop_order(stat, perennial, specific), [[5, 3, 2, 0, 1, -1]])


def test_the_order_decides_who_gets_a_tight_cell():
    # Two crops both want the small cell 0 (cap 2) and would each fit alone; the first in order takes it.
    base = dict(area=[10, 10], cap=[2, 20], prob=[[1, 1], [0.25, 0.25]], stat=[[2.5, 2.0]])
    first = allocate(problem(**base))  # crop 0 has the larger statistic: it goes first
    assert first.area_ha[0, 0] == pytest.approx(2.0) and first.area_ha[0, 1] == pytest.approx(0.0)
    swapped = allocate(problem(**base, specific=[False, True]))  # now crop 1 is specific, crop 0 general
    assert swapped.area_ha[0, 1] == pytest.approx(1.6) and swapped.area_ha[0, 0] == pytest.approx(0.0)


def test_a_crop_without_probability_is_spread_by_room():
    a = allocate(problem([10, 10], [3, 1], [[0], [0]], [2]))
    np.testing.assert_allclose(a.area_ha[:, 0], [1.5, 0.5])
    np.testing.assert_allclose(a.by_step_ha[0, 0], [0, 0, 2])


def test_proportional_allocation_spreads_each_statistic_by_the_weight():
    got = proportional_allocation(np.array([0, 0, 1]), np.array([1.0, 3.0, 2.0]), np.array([[8.0, 4.0], [5.0, 0.0]]))
    np.testing.assert_allclose(got, [[2, 1], [6, 3], [5, 0]])


def test_bad_problems_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        problem([10], [1], [[1]], [-1])
    with pytest.raises(ValueError, match="shape"):
        AllocationProblem(np.zeros(2, int), np.ones(2), np.ones(3), np.ones((2, 1)), np.ones((1, 1)),
                          np.zeros(1, bool), np.ones(1, bool))  # fmt: skip


def test_the_worlds_truth_per_piece_adds_up_to_its_statistic_of_the_unit():
    """mapper.allocate.world samples each piece; per unit it must agree with crop_area_in_polygon (40 × 40 samples
    per block), the world's statistic, within the sampling error."""
    from mapper.allocate.grid import AllocationGrid, unit_pieces
    from mapper.allocate.statistics import unit_frame
    from mapper.allocate.world import piece_truth
    from mapper.world.truth import crop_area_in_polygon
    from mapper.world.world import get_world

    units = unit_frame("prefecture")
    units = units[units["code"] == "CN044190"].reset_index(drop=True)[["code", "name", "geometry"]]  # Dongguan
    pieces = unit_pieces(AllocationGrid.named("block"), units)
    world = get_world(0)
    codes = list(range(1, 25))
    truth = piece_truth(world, pieces, codes, samples_per_side=20)
    ref = crop_area_in_polygon(world, units.geometry.iloc[0])
    ref_harvest = sum(ref.get(c, {}).get("harvested_ha", 0.0) for c in codes)
    assert truth["crop_ha"].sum() == pytest.approx(ref_harvest, rel=0.05)
    assert truth["cropland_ha"].sum() == pytest.approx(sum(v["ha"] for v in ref.values()), rel=0.05)
    assert (truth["intensity"] >= 0).all() and (truth["intensity"] <= 2).all()  # fallow cropland: no harvest
    assert truth["crop_ha"].sum() == pytest.approx(truth["harvest_ha"].sum(), rel=1e-9)  # no fallow harvest
