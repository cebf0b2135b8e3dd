"""Region kernels of field instances, compiled with numba: labelling, outlines and a seeded watershed.

    label_regions(values, inside) -> (labels, n)     4-connected regions of equal value, 1..n in raster order
    outline(values, inside) -> bool                  pixels of a region with a 4-neighbour of another value
    watershed(elevation, markers, mask) -> labels    markers flooded over the elevation, 4-connected
    merge_weak_boundaries(labels, strength, t)       neighbours whose shared boundary is weak joined
    join_pairs(n, pairs) -> root per item            union-find over pairs (stitching uses it too)

Fields use 4-connectivity everywhere: two fields that meet only at a pixel corner are two fields, an instance
traced by GDAL with 4-connectivity is one polygon, and a one-pixel (8-connected) outline ring is enough to keep
the interiors of neighbouring fields apart. Labels are numbered by each region's first pixel in raster order,
so the same image always gives the same ids. OpenCV's connectedComponents labels binary images only and
cv2.watershed floods by colour differences rather than by an elevation, hence these kernels.
"""

from __future__ import annotations

import heapq

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, inline="always")
def _union(parent, a, b):
    """Link the two roots, the larger index under the smaller: a root is its region's first pixel."""
    ra = _find(parent, a)
    rb = _find(parent, b)
    if ra < rb:
        parent[rb] = ra
    elif rb < ra:
        parent[ra] = rb


@njit(cache=True)
def _label_regions(values, inside, out):
    h, w = values.shape
    parent = np.arange(h * w).astype(np.int32)
    for r in range(h):
        for c in range(w):
            if not inside[r, c]:
                continue
            p = r * w + c
            if c > 0 and inside[r, c - 1] and values[r, c - 1] == values[r, c]:
                _union(parent, p - 1, p)
            if r > 0 and inside[r - 1, c] and values[r - 1, c] == values[r, c]:
                _union(parent, p - w, p)
    n = 0
    flat = out.ravel()
    for p in range(h * w):
        if not inside[p // w, p % w]:
            continue
        root = _find(parent, p)
        if root == p:
            n += 1
            flat[p] = n
        else:
            flat[p] = flat[root]
    return n


def label_regions(values: np.ndarray, inside: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(int32 labels, n): each 4-connected region of equal `values` inside `inside` (default values != 0) gets
    1..n by its first pixel in raster order; 0 outside. An instance image given as `values` comes back with
    every disconnected piece as an instance of its own."""
    values = np.ascontiguousarray(values)
    inside = np.ascontiguousarray(values != 0 if inside is None else inside, dtype=np.bool_)
    if values.shape != inside.shape or values.ndim != 2:
        raise ValueError(f"values {values.shape} and inside {inside.shape} must be 2-D arrays of one shape")
    out = np.zeros(values.shape, np.int32)
    n = _label_regions(values, inside, out)
    return out, int(n)


def outline(values: np.ndarray, inside: np.ndarray | None = None) -> np.ndarray:
    """Bool: pixels inside whose 4-neighbour (within the array) has another value or lies outside.

    Pixels on the array's edge are not outline for lack of a neighbour: give a padded window to see across it
    (the world's truth does), so that a field cut by a block border has no boundary along the cut."""
    values = np.asarray(values)
    inside = values != 0 if inside is None else np.asarray(inside, bool)
    differs = np.zeros(values.shape, bool)
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        d = (values[tuple(a)] != values[tuple(b)]) | (inside[tuple(a)] != inside[tuple(b)])
        differs[tuple(a)] |= d
        differs[tuple(b)] |= d
    return differs & inside


@njit(cache=True)
def _watershed(elevation, markers, mask, out):
    h, w = elevation.shape
    heap = [(np.float32(0.0), np.int64(0), np.int64(0))]
    heap.pop()
    age = 0
    for p in range(h * w):
        r, c = p // w, p % w
        if markers[r, c] > 0 and mask[r, c]:
            out[r, c] = markers[r, c]
            heapq.heappush(heap, (elevation[r, c], np.int64(age), np.int64(p)))
            age += 1
    dr = (-1, 0, 0, 1)
    dc = (0, -1, 1, 0)
    while len(heap) > 0:
        _, _, p = heapq.heappop(heap)
        r, c = p // w, p % w
        for k in range(4):
            rr, cc = r + dr[k], c + dc[k]
            if rr < 0 or rr >= h or cc < 0 or cc >= w or out[rr, cc] != 0 or not mask[rr, cc]:
                continue
            out[rr, cc] = out[r, c]
            heapq.heappush(heap, (elevation[rr, cc], np.int64(age), np.int64(rr * w + cc)))
            age += 1


def watershed(elevation: np.ndarray, markers: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """int32 labels: the markers (> 0) flooded over `elevation` in order of height (ties first come, first
    served), 4-connected, within `mask`; pixels of the mask that no marker reaches stay 0. The same flooding as
    scikit-image's `watershed(elevation, markers, connectivity=1, mask=mask)`."""
    elevation = np.ascontiguousarray(elevation, np.float32)
    markers = np.ascontiguousarray(markers, np.int32)
    mask = np.ones(elevation.shape, np.bool_) if mask is None else np.ascontiguousarray(mask, np.bool_)
    if not (elevation.shape == markers.shape == mask.shape) or elevation.ndim != 2:
        raise ValueError(f"elevation {elevation.shape}, markers {markers.shape} and mask {mask.shape} must agree")
    out = np.zeros(elevation.shape, np.int32)
    _watershed(elevation, markers, mask, out)
    return out


@njit(cache=True)
def _join_pairs(parent, pairs):
    for k in range(pairs.shape[0]):
        _union(parent, pairs[k, 0], pairs[k, 1])
    for i in range(parent.shape[0]):
        parent[i] = _find(parent, i)


def join_pairs(n: int, pairs: np.ndarray) -> np.ndarray:
    """int64 root of each of n items (the smallest index of its group) after joining the (k, 2) `pairs`."""
    parent = np.arange(n, dtype=np.int64)
    pairs = np.ascontiguousarray(np.asarray(pairs, np.int64).reshape(-1, 2))
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= n):
        raise ValueError(f"pairs must index items 0..{n - 1}")
    _join_pairs(parent, pairs)
    return parent


def merge_weak_boundaries(labels: np.ndarray, strength: np.ndarray, threshold: float) -> np.ndarray:
    """Instances with neighbours joined where their shared boundary is weak, relabelled 1..n.

    Over every pair of 4-adjacent pixels of two instances, the boundary strength of the pair is the larger of
    the two pixels'; two instances are joined when the mean over their shared pairs is below `threshold`.
    Seeds placed inside one field (by texture) are flooded into regions that meet along no real boundary: this
    is what undoes that over-segmentation, as region merging after a watershed usually does."""
    labels = np.asarray(labels)
    strength = np.asarray(strength, np.float32)
    n = int(labels.max(initial=0)) + 1
    codes, values = [], []
    for axis in (0, 1):
        a = (slice(1, None), slice(None)) if axis == 0 else (slice(None), slice(1, None))
        b = (slice(None, -1), slice(None)) if axis == 0 else (slice(None), slice(None, -1))
        la, lb = labels[a], labels[b]
        m = (la != lb) & (la > 0) & (lb > 0)
        codes.append(np.minimum(la[m], lb[m]).astype(np.int64) * n + np.maximum(la[m], lb[m]))
        values.append(np.maximum(strength[a][m], strength[b][m]))
    pair_codes, inverse = np.unique(np.concatenate(codes), return_inverse=True)
    mean = np.bincount(inverse, np.concatenate(values)) / np.bincount(inverse)
    weak = pair_codes[mean < threshold]
    root = join_pairs(n, np.column_stack(np.divmod(weak, n)))
    return label_regions(root[labels])[0]
