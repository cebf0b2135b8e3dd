"""mapper.fields.evaluate: hand-counted cases and a brute-force reference (FTW's loop over instance pairs)."""

import numpy as np
import pytest

from mapper.fields.evaluate import FieldScores, score_instances, sum_scores


def two_fields() -> np.ndarray:
    """Two 10 × 10 fields side by side with a background column between them."""
    t = np.zeros((10, 21), np.int32)
    t[:, :10] = 1
    t[:, 11:] = 2
    return t


def test_perfect_prediction_with_other_ids():
    t = two_fields()
    s = score_instances(t, np.where(t > 0, 10 - t, 0))  # ids 9 and 8: names do not matter
    assert (s.tp, s.fp, s.fn) == (2, 0, 0)
    assert s.f1 == s.extent_iou == s.boundary_f == 1.0 and s.median_area_error == 0.0


def test_one_field_split_in_two_equal_halves():
    # field 1 split into two halves (IoU exactly 0.5 each: not above the threshold), field 2 right
    t = two_fields()
    p = t.copy()
    p[:5, :10] = 3
    s = score_instances(t, p)
    assert (s.tp, s.fp, s.fn) == (1, 2, 1)
    assert s.precision == pytest.approx(1 / 3) and s.recall == pytest.approx(1 / 2)
    assert s.f1 == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert s.extent_iou == 1.0


def test_one_field_split_unequally_matches_the_larger_piece():
    t = two_fields()
    p = t.copy()
    p[:3, :10] = 3  # 30 / 70: the 70-pixel piece has IoU 0.7 with field 1
    s = score_instances(t, p)
    assert (s.tp, s.fp, s.fn) == (2, 1, 0)
    assert s.precision == pytest.approx(2 / 3) and s.recall == 1.0
    assert s.median_area_error == pytest.approx(np.median([0.3, 0.0]))


def test_two_fields_merged_into_one():
    t = two_fields()
    p = np.ones_like(t)  # one prediction over both fields and the gap: IoU 100/210 < 0.5 with each
    s = score_instances(t, p)
    assert (s.tp, s.fp, s.fn) == (0, 1, 2)
    assert s.f1 == 0.0
    assert s.extent_iou == pytest.approx(200 / 210)


def test_boundary_within_one_pixel():
    t = np.zeros((12, 12), np.int32)
    t[2:10, 2:10] = 1  # outline: the 28 pixels of the square's ring
    p = np.zeros_like(t)
    p[3:10, 2:10] = 1  # shifted top edge by one pixel: still within tolerance
    s = score_instances(t, p, tolerance_px=1)
    assert s.boundary_precision == 1.0 and s.boundary_recall == 1.0
    s0 = score_instances(t, p, tolerance_px=0)
    assert s0.boundary_pred == 26 and s0.boundary_true == 28
    assert s0.boundary_pred_near == 20  # the 6 inner pixels of the shifted top row are off the true ring


def test_min_pixels_and_valid_mask():
    t = two_fields()
    t[0, 10] = 3  # a one-pixel fragment
    p = two_fields()
    assert score_instances(t, p).fn == 1
    assert score_instances(t, p, min_pixels=2).fn == 0
    valid = np.ones(t.shape, bool)
    valid[:, 11:] = False
    s = score_instances(t, p, valid=valid, min_pixels=2)
    assert (s.tp, s.fp, s.fn) == (1, 0, 0)


def test_scores_pool_counts_over_blocks():
    t = two_fields()
    a = score_instances(t, t)
    b = score_instances(t, np.ones_like(t))
    total = sum_scores([a, b])
    assert (total.tp, total.fp, total.fn) == (2, 1, 2)
    assert total.precision == pytest.approx(2 / 3) and total.recall == pytest.approx(1 / 2)
    assert len(total.area_errors) == 2
    assert FieldScores().as_dict()["f1"] != FieldScores().as_dict()["f1"]  # NaN without anything to count


def brute_force(true, pred, thr=0.5, tol=1):
    """FTW's loop (every true field against every prediction) and boundaries pixel by pixel."""
    tids = [v for v in np.unique(true) if v]
    pids = [v for v in np.unique(pred) if v]
    tp, matched, errors = 0, set(), []
    for i in tids:
        ti = true == i
        for j in pids:
            pj = pred == j
            inter = np.count_nonzero(ti & pj)
            if inter and inter / np.count_nonzero(ti | pj) > thr:
                tp += 1
                matched.add(j)
                errors.append(abs(pj.sum() - ti.sum()) / ti.sum())
                break

    def ring(lab):
        h, w = lab.shape
        out = np.zeros(lab.shape, bool)
        for r in range(h):
            for c in range(w):
                if lab[r, c] == 0:
                    continue
                for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < h and 0 <= cc < w and lab[rr, cc] != lab[r, c]:
                        out[r, c] = True
        return out

    def near(a, b):
        rs, cs = np.nonzero(b)
        hits = [np.any((abs(rs - r) <= tol) & (abs(cs - c) <= tol)) for r, c in zip(*np.nonzero(a), strict=True)]
        return int(sum(hits))

    bt, bp = ring(true), ring(pred)
    return tp, len(pids) - len(matched), len(tids) - tp, near(bp, bt), near(bt, bp), sorted(errors)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    true = np.repeat(np.repeat(rng.integers(0, 6, (6, 6)), 5, 0), 5, 1)  # 30 × 30, blocks of 5 px
    pred = true.copy()
    noise = rng.random(true.shape) < 0.15
    pred[noise] = rng.integers(0, 8, noise.sum())
    pred[rng.integers(0, 30), :] = 7  # a stripe cutting through several fields
    s = score_instances(true, pred)
    tp, fp, fn, bp_near, bt_near, errors = brute_force(true, pred)
    assert (s.tp, s.fp, s.fn) == (tp, fp, fn)
    assert (s.boundary_pred_near, s.boundary_true_near) == (bp_near, bt_near)
    assert sorted(s.area_errors.tolist()) == pytest.approx(errors)
