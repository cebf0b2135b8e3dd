"""Crop-type checkpoints: mapper.models.checkpoint directories of kind "croptype" whose checkpoint.json also
names what the model expects of its data, checked before the model is built:

    arch           CropNet's arch dict (mapper.croptype.model)
    classes        leaf names, in leaf-index order
    normalisation  {"mean": [per band], "std": [per band]}
    input          {"bands": ["B2", …], "steps": [121, 126, …]} — band names in order, days of year of the steps
    taxonomy       Taxonomy.describe(): {"sha256", "sizes", "table"}
    training       {"config": CropTrainConfig as a dict, …the caller's training info}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from mapper.croptype.series import BANDS, STEP_DAYS_OF_YEAR
from mapper.croptype.taxonomy import Taxonomy, from_description
from mapper.models.checkpoint import Checkpoint, CheckpointError, load_checkpoint, read_checkpoint_meta, save_checkpoint

KIND = "croptype"


def save_croptype_checkpoint(
    path: Path | str,
    model,
    taxonomy: Taxonomy,
    normalisation: dict,
    cfg=None,
    training_info: dict | None = None,
    bands: Sequence[str] = BANDS,
    steps: Sequence[int] = STEP_DAYS_OF_YEAR,
) -> Path:
    """Write a trained CropNet with everything needed to check and use it (see the module docstring)."""
    arch = model.arch
    bands, steps = [str(b) for b in bands], [int(d) for d in steps]
    if len(bands) != arch["bands"] or len(steps) != arch["steps"]:
        raise ValueError(
            f"the model takes {arch['bands']} bands × {arch['steps']} steps; got {len(bands)} band "
            f"names and {len(steps)} steps"
        )
    if list(arch["sizes"]) != list(taxonomy.sizes) or arch["n_leaves"] != taxonomy.n_leaves:
        raise ValueError(f"the model's class counts {arch['sizes']} do not fit the taxonomy {list(taxonomy.sizes)}")
    if len(normalisation["mean"]) != len(bands) or len(normalisation["std"]) != len(bands):
        raise ValueError(f"normalisation must have one mean and std per band ({len(bands)})")
    config = cfg.model_dump() if isinstance(cfg, BaseModel) else dict(cfg or {})
    meta = {
        "kind": KIND,
        "arch": arch,
        "classes": list(taxonomy.leaf_names()),
        "normalisation": {
            "mean": [float(v) for v in normalisation["mean"]],
            "std": [float(v) for v in normalisation["std"]],
        },
        "input": {"bands": bands, "steps": steps},
        "taxonomy": taxonomy.describe(),
        "training": {"config": config, **(training_info or {})},
    }
    return save_checkpoint(path, model, meta)


def _named(where: str) -> str:
    return f"checkpoint {where}" if where else "the checkpoint"


def _summary(desc_sizes, sha: str) -> str:
    return f"{sha[:12]} ({'/'.join(str(s) for s in desc_sizes)} classes per level)"


def check_taxonomy(meta: dict, taxonomy: Taxonomy, where: str) -> None:
    have = meta["taxonomy"]
    if have["sha256"] == taxonomy.sha256:
        return
    ours = [r["level4"] for r in have["table"]]
    theirs = list(taxonomy.leaf_names())
    only_ckpt = [n for n in ours if n not in theirs]
    only_data = [n for n in theirs if n not in ours]
    detail = []
    if only_ckpt:
        detail.append(f"leaves only in the checkpoint: {', '.join(only_ckpt)}")
    if only_data:
        detail.append(f"leaves only in the data's taxonomy: {', '.join(only_data)}")
    if not detail:
        detail.append("the same leaves, but other codes, parents, order or flags")
    raise CheckpointError(
        f"{_named(where)} was trained on taxonomy {_summary(have['sizes'], have['sha256'])}; the data uses "
        f"{_summary(taxonomy.sizes, taxonomy.sha256)}: {'; '.join(detail)} — use the checkpoint's taxonomy (its "
        'table is under "taxonomy" in checkpoint.json) or train a model on this taxonomy'
    )


def check_bands(meta: dict, bands: Sequence[str], where: str) -> None:
    want = list(meta["input"]["bands"])
    missing = [b for b in want if b not in bands]
    if missing:
        raise CheckpointError(
            f"{_named(where)} was trained on bands {','.join(want)}; the data has {','.join(bands)}: missing "
            f"{','.join(missing)} — supply those bands or train a model on the {len(bands)} bands the data has"
        )


def check_steps(meta: dict, steps: Sequence[int], where: str) -> None:
    want = [int(d) for d in meta["input"]["steps"]]
    got = [int(d) for d in steps]
    if want != got:
        raise CheckpointError(
            f"{_named(where)} takes {len(want)} steps on days of year {want[0]}..{want[-1]}; the data has "
            f"{len(got)} steps{f' on {got[0]}..{got[-1]}' if got else ''} — resample the series onto the "
            "checkpoint's steps or train a model on these"
        )


def load_croptype(
    path: Path | str,
    expect_taxonomy: Taxonomy | None = None,
    expect_bands: Sequence[str] | None = None,
    expect_steps: Sequence[int] | None = None,
) -> Checkpoint:
    """Load a crop-type checkpoint; CheckpointError (naming the difference and the fix) when its taxonomy,
    bands or steps do not fit the data's. Checked before the weights are read."""
    meta = read_checkpoint_meta(path)
    if meta["kind"] != KIND:
        raise CheckpointError(f"checkpoint {path} is a {meta['kind']!r} model, not {KIND!r}; use a {KIND} checkpoint")
    lacking = [k for k in ("taxonomy", "input") if k not in meta] + [
        k for k in ("bands", "steps") if k not in meta.get("input", {})
    ]
    if lacking:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(lacking)} in its checkpoint.json; re-train it")
    if expect_taxonomy is not None:
        check_taxonomy(meta, expect_taxonomy, str(path))
    if expect_bands is not None:
        check_bands(meta, list(expect_bands), str(path))
    if expect_steps is not None:
        check_steps(meta, list(expect_steps), str(path))
    return load_checkpoint(path, KIND)


def checkpoint_taxonomy(ckpt: Checkpoint) -> Taxonomy:
    """The taxonomy the checkpoint was trained on, rebuilt from its table."""
    return from_description(ckpt.meta["taxonomy"])
