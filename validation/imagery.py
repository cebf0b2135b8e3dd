"""How much of a province's imagery is unusable, for the stop rule's waiver for cloudy provinces.

The paper lets a province stop without meeting the PCS criterion after three extra rounds of labelling only
when persistent cloud or poor imagery keeps its mapped area short (Sect. 3.2.4). The run knows which images
are poor: the IQA stage gives each block × source a coverage type, and Cloudy, Snow/Ice and Nodata are
unusable (as mapper.decide.truth.ARTIFACT_COVERAGE and the campaign pool's rule). A block has **poor
imagery** when none of its sources is usable: then no source can map it. A province's share of poor imagery
is the share of its blocks with an IQA result for every source that have poor imagery; over the run's
blocks only (a sample run judges its sample). Without any IQA result the share is unknown (None), and the
waiver does not apply (validation/stop.py).
"""

from __future__ import annotations

from mapper.validation.run_data import RunData

POOR_COVERAGE = frozenset({"Cloudy", "Snow/Ice", "Nodata"})
RULE = "blocks whose every source's IQA coverage is Cloudy, Snow/Ice or Nodata, over the blocks with IQA for all"


def block_coverage(run: RunData) -> dict[str, dict[str, str | None]]:
    """{block_id: {source: IQA coverage}} of the blocks whose IQA stage finished, from the state database."""
    out: dict[str, dict[str, str | None]] = {}
    for source in run.sources:
        for block_id, result in run.store.results("iqa", source):
            out.setdefault(block_id, {})[source] = result.get("coverage")
    return out


def poor_imagery(run: RunData) -> dict[str, dict]:
    """{province: {"share", "poor", "blocks", "rule"}} of the run's blocks (see the module docstring)."""
    coverage = block_coverage(run)
    counts: dict[str, list[int]] = {}
    for block_id, province in run.province_of.items():
        found = coverage.get(block_id, {})
        if province is None or len(found) < len(run.sources) or not run.sources:
            continue
        poor = all(c in POOR_COVERAGE for c in found.values())
        tally = counts.setdefault(province, [0, 0])
        tally[0] += poor
        tally[1] += 1
    return {p: {"share": poor / n, "poor": poor, "blocks": n, "rule": RULE} for p, (poor, n) in counts.items()}
