"""The component scores of a selection over the pool table (NaN: the block is no candidate for that score), and
the lines that quote them to the labeller.

- error — the paper's (Sect. 2.2.4, 3.2.1: label where the errors are). Per source s, p_err(s) = p_FP + p_Noise
  + p_Artifact of the correctness model. The sources the decision uses: Only A → A, Only B → B; Merge, Neither
  or no decision → both (Neither means both looked wrong to the integration: the segmentation errors worth
  fixing). Unusable sources are left out (their error is the imagery's; if that leaves none, the usable ones
  count). e = the largest p_err over those sources. Province weight w = 1 + pcs_weight · max(0, T − PCS) / T
  with T = pcs_threshold (the stop criterion, 0.80): 1 at or above the threshold or without a PCS, rising
  linearly to 1 + pcs_weight at PCS 0 (one-sided, like the stop criterion). error_score = e · w.
- uncertainty — uncertain area in true m²: per usable source uncertain_fraction × valid_fraction × land_m2
  (share of imaged pixels with cropland probability in 0.25..0.75 × the imaged share × the block's ground area
  inside the region); the larger of the two sources (source A's alone in a one-source table).
- disagreement — 1 − a_consistency_iou (the IoU of the two sources' masks over the pixels both imaged).
- negative — for the negative quota only: a block is a negative candidate when the final map's
  cropland_fraction ≤ negative_max_cropland_fraction, or when a usable source is judged FP and the final map's
  cropland_fraction ≤ negative_fp_max_cropland_fraction. FP alone is not enough: the correctness classes
  (mapper.decide.truth) count omission (fields missed) as FP too, so an FP block may be rich in cropland; an
  unknown fraction is never a negative. Its score is the largest p_FP over the usable sources (hard negatives:
  what the segmentation takes for cropland), 0 when unknown. A one-source table without correctness columns
  has negatives by the final map's fraction alone.
- combined — Σ_c w_c · r_c / Σ_c w_c over the components c the table allows (`combined_components`: weighted
  above 0, and in a one-source table not error or disagreement, so the weights are renormalised over the
  rest), where r_c is the block's percentile rank of score c among the candidates (average ties, in (0, 1]; 0
  where c is NaN) and w_c the `weights`.

error and disagreement need two sources (error reads the integration model's decision between A and B): in a
one-source table (mapper.al.pool) asking for them is a SelectionError that names the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mapper.al.pool import (
    SOURCES,
    SelectionError,
    numeric,
    require_columns,
    require_two_sources,
    sources_in,
    usable_sources,
)
from mapper.config.models import SELECTION_COMPONENTS as COMPONENTS
from mapper.config.models import ComponentWeights, SelectionSettings

ERROR_CLASSES = ("FP", "Noise", "Artifact")
TWO_SOURCE_COMPONENTS = ("error", "disagreement")  # the components a one-source table cannot give


@dataclass
class Scores:
    """Per-row score arrays (NaN: not a candidate for it) and what the reasons quote."""

    error: np.ndarray
    error_p: np.ndarray
    error_source: np.ndarray  # 0 = A, 1 = B
    province_pcs: np.ndarray
    uncertainty: np.ndarray
    uncertainty_source: np.ndarray
    disagreement: np.ndarray


def _nan_scores(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def _max_over_sources(values: np.ndarray, use: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row max, which source) of a (rows, sources) array over the sources `use` marks; NaN where none has a
    value."""
    masked = np.where(use, values, np.nan)
    has = ~np.isnan(masked).all(axis=1)
    which = np.where(has, np.argmax(np.nan_to_num(masked, nan=-np.inf), axis=1), 0)
    best = np.where(has, masked[np.arange(len(masked)), which], np.nan)
    return best, which


def error_probability(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(e, source): the largest p_FP + p_Noise + p_Artifact over the usable sources the decision uses."""
    require_two_sources(table, "the error score (it reads the integration model's decision between A and B)")
    require_columns(table, ["decision", *(f"{s}_p_{c}" for s in SOURCES for c in ERROR_CLASSES)])
    p_err = np.column_stack([sum(numeric(table, f"{s}_p_{c}") for c in ERROR_CLASSES) for s in SOURCES])
    decision = table["decision"].to_numpy(dtype=object)
    used = np.column_stack([decision != "Only B", decision != "Only A"])
    usable = usable_sources(table)
    use = used & usable
    use[~use.any(axis=1)] = usable[~use.any(axis=1)]  # the decision's source is unusable: judge the other
    return _max_over_sources(p_err, use)


def province_weight(pcs: np.ndarray, settings: SelectionSettings) -> np.ndarray:
    t = settings.pcs_threshold
    shortfall = np.nan_to_num(np.maximum(0.0, t - pcs), nan=0.0) / t
    return 1.0 + settings.pcs_weight * shortfall


def uncertainty_m2(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(m², source): the larger uncertain area of the usable sources of the table."""
    sources = sources_in(table)
    per_source = (f"{s}_{f}" for s in sources for f in ("uncertain_fraction", "valid_fraction"))
    require_columns(table, ["land_m2", *per_source])
    land = numeric(table, "land_m2")
    area = np.column_stack([numeric(table, f"{s}_uncertain_fraction") * numeric(table, f"{s}_valid_fraction") * land
                            for s in sources])  # fmt: skip
    return _max_over_sources(area, usable_sources(table))


def disagreement(table: pd.DataFrame) -> np.ndarray:
    require_two_sources(table, "the disagreement score (1 − the IoU of the two sources' masks)")
    require_columns(table, ["a_consistency_iou"])
    return 1.0 - numeric(table, "a_consistency_iou")


def compute_scores(table: pd.DataFrame, needed: Iterable[str], settings: SelectionSettings,
                   province_pcs: Mapping[str, float] | None) -> Scores:  # fmt: skip
    """The component scores: those `needed` must be computable (else SelectionError), the rest are filled
    when their columns are there (for the output), NaN otherwise."""
    needed, n = set(needed), len(table)
    pcs = pd.to_numeric(table["province"].map(dict(province_pcs or {})), errors="coerce").to_numpy(dtype=float)

    def attempt(name, fn, default):
        try:
            return fn()
        except SelectionError:
            if name in needed:
                raise
            return default

    zeros = np.zeros(n, dtype=int)
    e, e_src = attempt("error", lambda: error_probability(table), (_nan_scores(n), zeros))
    u, u_src = attempt("uncertainty", lambda: uncertainty_m2(table), (_nan_scores(n), zeros))
    d = attempt("disagreement", lambda: disagreement(table), _nan_scores(n))
    return Scores(e * province_weight(pcs, settings), e, e_src, pcs, u, u_src, d)


def percentile_rank(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Rank / count among the candidates with a value (average ties, in (0, 1]); 0 elsewhere."""
    ranked = pd.Series(np.where(candidates, values, np.nan)).rank(method="average", pct=True).to_numpy()
    return np.nan_to_num(ranked, nan=0.0)


def combined_components(weights: ComponentWeights, sources: tuple[str, ...] = SOURCES) -> tuple[str, ...]:
    """The components the combined score ranks by: those weighted above 0 that a table of these sources gives
    (error and disagreement need two)."""
    allowed = COMPONENTS if len(sources) > 1 else tuple(c for c in COMPONENTS if c not in TWO_SOURCE_COMPONENTS)
    return tuple(c for c in allowed if getattr(weights, c) > 0)


def combined_score(scores: Scores, candidates: np.ndarray, weights: ComponentWeights,
                   components: tuple[str, ...] = COMPONENTS) -> np.ndarray:  # fmt: skip
    """The weighted mean of the components' percentile ranks, the weights renormalised over `components`
    (NaN everywhere when there is none)."""
    parts = {"error": scores.error, "uncertainty": scores.uncertainty, "disagreement": scores.disagreement}
    total = sum(getattr(weights, c) for c in components)
    if not total:
        return np.full(len(candidates), np.nan)
    return sum(getattr(weights, c) * percentile_rank(parts[c], candidates) for c in components) / total


def judged_sources(table: pd.DataFrame) -> tuple[str, ...]:
    """The sources whose correctness judgement the negatives read: both of a two-source table (the decide stage
    writes them), source A of a one-source table only when its columns are there."""
    sources = sources_in(table)
    return sources if len(sources) > 1 else tuple(s for s in sources if f"{s}_pred_semantic" in table.columns)


def negative_candidates(table: pd.DataFrame, settings: SelectionSettings) -> tuple[np.ndarray, np.ndarray]:
    """(is negative candidate, negative score) without truth: little cropland in the final map, or a usable
    source judged FP with a low final-map cropland fraction (module docstring); scored by the largest p_FP of
    the usable judged sources."""
    judged = judged_sources(table)
    require_columns(table, ["cropland_fraction", *(f"{s}_{c}" for s in judged for c in ("pred_semantic", "p_FP"))])
    fraction, n = numeric(table, "cropland_fraction"), len(table)
    little = fraction <= settings.negative_max_cropland_fraction
    if not judged:
        return little, np.zeros(n)
    usable = usable_sources(table)[:, [sources_in(table).index(s) for s in judged]]
    judged_fp = np.column_stack([(table[f"{s}_pred_semantic"] == "FP").to_numpy() for s in judged]) & usable
    # FP covers omission too: a block whose map is rich in cropland is no negative, whatever the judgement
    fp_low = judged_fp.any(axis=1) & (fraction <= settings.negative_fp_max_cropland_fraction)
    p_fp, _ = _max_over_sources(np.column_stack([numeric(table, f"{s}_p_FP") for s in judged]), usable)
    return little | fp_low, np.nan_to_num(p_fp, nan=0.0)


# ---------------------------------------------------------------------------------------------- reasons
def error_text(table: pd.DataFrame, scores: Scores, r: int, settings: SelectionSettings) -> str:
    if np.isnan(scores.error_p[r]):
        return "no correctness judgement"
    s = SOURCES[scores.error_source[r]]
    judged = table[f"{s}_pred_semantic"].iat[r] if f"{s}_pred_semantic" in table else "?"
    text = f"source {s.upper()} judged {judged} (error p {scores.error_p[r]:.2f})"
    if scores.province_pcs[r] < settings.pcs_threshold:
        text += f"; {table['province'].iat[r]} PCS {scores.province_pcs[r]:.2f}"
    return text


def uncertainty_text(scores: Scores, r: int) -> str:
    s = SOURCES[scores.uncertainty_source[r]].upper()
    return f"{scores.uncertainty[r] / 1e4:.1f} ha of uncertain cropland probability (source {s})"


def disagreement_text(scores: Scores, r: int) -> str:
    return f"the two sources disagree (consistency IoU {1 - scores.disagreement[r]:.2f})"
