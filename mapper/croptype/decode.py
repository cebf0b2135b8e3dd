"""Consistent decoding of the four per-level outputs into one leaf, so every prediction is a real path.

Independent per-level argmaxes can disagree (level 2 "rice" under level 1 "oilseeds"). Instead each leaf is
scored by its whole path, score(leaf) = Σ_level log p_level[path[leaf, level]], and the prediction is the best
leaf; its per-level classes are its path. The leaf probability is the softmax of the leaf scores: the path
probability renormalised over the paths that exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Decoded:
    leaf: np.ndarray  # (N,) int64 leaf index
    levels: np.ndarray  # (N, 4) int64 class index per level: taxonomy.paths[leaf]
    leaf_prob: np.ndarray  # (N,) probability of the chosen path among the valid paths
    scores: np.ndarray  # (N, n_leaves) leaf scores (sums of per-level log-probabilities)


def _numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor, without importing torch here
        a = a.detach().cpu().numpy()
    return np.asarray(a, np.float64)


def log_softmax(a: np.ndarray) -> np.ndarray:
    a = a - a.max(axis=1, keepdims=True)
    return a - np.log(np.exp(a).sum(axis=1, keepdims=True))


def leaf_scores(level_outputs: Sequence, paths: np.ndarray) -> np.ndarray:
    """(N, n_leaves) Σ_level log p_level[path]. Each level is log-softmaxed first, which leaves
    log-probabilities unchanged and makes plain logits work too."""
    paths = np.asarray(paths, np.int64)
    if len(level_outputs) != paths.shape[1]:
        raise ValueError(f"{len(level_outputs)} level outputs for a taxonomy of {paths.shape[1]} levels")
    logp = [log_softmax(_numpy(a)) for a in level_outputs]
    for lv, a in enumerate(logp):
        need = int(paths[:, lv].max()) + 1
        if a.shape[1] < need:
            raise ValueError(f"level {lv + 1} output has {a.shape[1]} classes; the taxonomy needs {need}")
    return sum(a[:, paths[:, lv]] for lv, a in enumerate(logp))


def decode(level_outputs: Sequence, paths: np.ndarray) -> Decoded:
    """Best valid path per sample from per-level log-probabilities (or logits), each (N, C_level)."""
    paths = np.asarray(paths, np.int64)
    scores = leaf_scores(level_outputs, paths)
    leaf = scores.argmax(axis=1)
    prob = np.exp(log_softmax(scores))
    return Decoded(leaf, paths[leaf], prob[np.arange(len(leaf)), leaf], scores)


def valid_paths(levels: np.ndarray, paths: np.ndarray) -> np.ndarray:
    """(N,) bool: is each row of (N, 4) class indices a row of `paths`?"""
    levels, paths = np.asarray(levels, np.int64), np.asarray(paths, np.int64)
    if levels.ndim != 2 or levels.shape[1] != paths.shape[1]:
        raise ValueError(f"levels must be (N, {paths.shape[1]}), got {levels.shape}")
    if not len(levels):
        return np.zeros(0, bool)
    base = int(max(levels.max(), paths.max())) + 1  # one integer per path (mixed radix): no (N, leaves) table
    weights = base ** np.arange(paths.shape[1], dtype=np.int64)
    return np.isin(levels @ weights, paths @ weights)


def raw_consistency(levels: np.ndarray, taxonomy) -> float:
    """Share of samples whose independent per-level argmaxes (N, 4) form a path of the taxonomy (a Taxonomy,
    or its (n_leaves, 4) paths array). NaN for no samples."""
    paths = getattr(taxonomy, "paths", taxonomy)
    ok = valid_paths(levels, paths)
    return float(ok.mean()) if len(ok) else float("nan")
