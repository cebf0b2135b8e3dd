"""What the training loops of every model share: the learning-rate schedule, the optimizer state as tensors
(saved beside a checkpoint as safetensors, never pickled), the device, and the check that a run may start
or resume at its output directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from mapper.config.models import StrictModel

if TYPE_CHECKING:
    from mapper.models.registry import ModelSpec

TRAIN_STATE = "train_state"  # the extra tensor file of an unfinished run: the optimizer state


class AugmentConfig(StrictModel):
    """Geometric and colour augmentation of training images (defaults: IQA's; segmentation sets its own)."""

    flips: bool = True
    rot90: bool = True
    brightness: float = Field(0.05, ge=0, le=0.5)  # × U(1 ± b), all colour channels
    channel_gain: float = Field(0.03, ge=0, le=0.5)  # × U(1 ± g) per channel
    contrast: float = Field(0.05, ge=0, le=0.5)  # around the image's mean colour


def lr_factor(step: int, total: int, warmup: int, power: float) -> float:
    """Linear warm-up from ~0 to 1 over `warmup` steps, then (1 - progress) ** power down to 0 at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    rest = max(1, total - warmup)
    return max(0.0, 1.0 - (step - warmup) / rest) ** power


def optimizer_tensors(opt) -> tuple[dict, list]:
    """An optimizer's state as flat tensors ({"<param index>.<name>": tensor}) and its param groups (JSON)."""
    sd = opt.state_dict()
    tensors = {f"{i}.{name}": t for i, st in sd["state"].items() for name, t in st.items()}
    groups = [dict(g) for g in sd["param_groups"]]
    return tensors, groups


def restore_optimizer(opt, tensors: dict, groups: list) -> None:
    state: dict[int, dict] = {}
    for key, t in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = t
    opt.load_state_dict({"state": state, "param_groups": groups})


def torch_device(name: str | None):
    """The torch device named, or cuda when available, else cpu."""
    import torch

    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_resumable(out: Path | str, resume: bool, spec: ModelSpec, done_key: str, total: int, unit: str) -> None:
    """Before any work: CheckpointError unless `out` is free (a new run), or (resume) an unfinished run of
    `spec`'s kind, arch and input with `unit`s left (training[done_key] < total). Reads checkpoint.json only."""
    from mapper.models.checkpoint import CheckpointError, arch_differences, read_checkpoint_meta

    out = Path(out)
    if not resume:
        if out.exists():
            try:
                read_checkpoint_meta(out)
                what = "holds a checkpoint"
            except CheckpointError:
                what = "exists"
            raise CheckpointError(f"{out} {what}; pass --resume to continue it, or choose another --out")
        return
    if not out.exists():
        raise CheckpointError(f"nothing to resume: {out} does not exist; drop --resume to start training")
    meta = read_checkpoint_meta(out)
    if meta["kind"] != spec.kind:
        raise CheckpointError(f"checkpoint {out} is a {meta['kind']!r} model, not {spec.kind!r}")
    if meta["arch"] != spec.arch:
        diffs = "; ".join(arch_differences(meta["arch"], spec.arch))
        raise CheckpointError(
            f"checkpoint {out} has another architecture; differing keys: {diffs}. Resume with its arch"
        )
    have = {k: meta["input"].get(k, 0) for k in ("size", "overlap")}
    want = {"size": spec.input.size, "overlap": spec.input.overlap}
    if have != want:
        raise CheckpointError(f"checkpoint {out} has input {have}, {spec.name} {want}; resume with its arch")
    done = int(meta.get("training", {}).get(done_key, 0))
    if f"{TRAIN_STATE}.safetensors" not in meta.get("extra_files", {}):
        raise CheckpointError(
            f"checkpoint {out} finished its {done} {unit} and keeps no optimizer state; nothing to resume. "
            "Train a new one (another --out) to train longer"
        )
    if done >= total:
        raise CheckpointError(f"checkpoint {out} already has {done} of {total} {unit}; nothing to resume")
