"""A campaign's three fixed samples of blocks, chosen once at `mapper al init`:

- **pool** — the candidates for labelling: a spread sample of `al.pool_blocks` of the provinces' blocks (as
  `mapper run --max-blocks` spreads them), or the done blocks of an existing run;
- **validation** — judged every round, never selected, never trained on;
- **decision** — the blocks the decision models are retrained on after a segmentation change: never trained
  on by segmentation, so their correctness labels are honest (the paper kept a separate systematic sample).

Validation and decision blocks are drawn at random (seeded by al.seed) among the provinces' other blocks,
in proportion to each province's blocks. On the simulated world their labels are its truth, written once
here in the labelled-block form; for real imagery they are given (`--validation-labels`, `--decision-labels`:
directories of labelled blocks, e.g. from an earlier round of labelling).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plan_of(region):
    from mapper.run.plan import plan_blocks

    return plan_blocks(region)


def spread_pool(plan, n: int) -> list[str]:
    from mapper.imagery.fetch import spread_indices

    return [plan["block_id"].iloc[i] for i in spread_indices(len(plan), n)]


def random_sample(plan, n: int, exclude: set[str], seed: int) -> list[str]:
    """n blocks of the plan outside `exclude`, drawn per province in proportion to its blocks (seeded)."""
    rest = plan[~plan["block_id"].isin(exclude) & (plan["frac_inside"] > 0.5)]
    if len(rest) < n:
        rest = plan[~plan["block_id"].isin(exclude)]
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(rest), size=min(n, len(rest)), replace=False)
    return sorted(rest["block_id"].iloc[np.sort(picked)].tolist())


def labelled_ids(root: Path | str) -> list[str]:
    """The complete labelled blocks under `root`."""
    from mapper.labels.store import block_dirs, is_complete

    return [d.name for d in block_dirs(root) if is_complete(d)]


def write_world_sample(seed: int, block_ids, out_root: Path, sources: dict[str, str]) -> list[str]:
    """The world's truth of the blocks as labelled blocks (already complete ones are kept: resumable)."""
    from mapper.grid.blocks import Block
    from mapper.labels.store import is_complete
    from mapper.labels.world import write_world_block

    for block_id in block_ids:
        if not is_complete(out_root / block_id):
            write_world_block(seed, Block.parse(block_id), out_root, sources)
    return list(block_ids)


def copy_labels(src: Path, block_ids, out_root: Path) -> None:
    """Given labelled blocks copied into the campaign (so the campaign keeps what it was judged on)."""
    import shutil

    for block_id in block_ids:
        final = out_root / block_id
        if (final / "label.json").exists():
            continue
        tmp = out_root / f".{block_id}.copy"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(Path(src) / block_id, tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)  # whole or not at all
