"""Model checkpoints: a directory of safetensors weights and a JSON description. Never a pickle.

    <dir>/weights.safetensors     the model's state dict (safetensors: tensors only, nothing executable)
    <dir>/checkpoint.json         format, kind ("iqa" | "segmentation" | "croptype" | "fields"), arch (the full
                                  config dict the model is built from), classes, normalisation {mean, std}, input (e.g.
                                  {"size": 128}), training (world seeds, epochs, metrics, the command), sha256 of
                                  the weights, extra_files {name: sha256}, mapper_version, created
    <dir>/<extra>.safetensors     optional tensors beside the weights (the optimizer state of an unfinished
                                  training run), each with its sha256 in checkpoint.json

`save_checkpoint` writes the whole directory under a temporary name beside the target and renames it into
place, so a kill leaves the old checkpoint or the new one, never a mixture. (Replacing an existing directory
takes two renames; a kill between them leaves the old one as `.<name>.old-<id>` beside it, and
`load_checkpoint` says so.) `load_checkpoint` checks the files, the sha256 of every tensor file, the kind and
(optionally) the arch before it builds the model; every failure is a CheckpointError naming what is wrong and
the fix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mapper.store.json_file import read_json

if TYPE_CHECKING:
    import torch

FORMAT = "mapper-checkpoint/1"
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "checkpoint.json"
KINDS = ("iqa", "segmentation", "croptype", "fields")
REQUIRED_META = ("kind", "arch", "classes", "normalisation", "input")

# kind -> "module:function" building an nn.Module from an arch dict (imported only when a checkpoint loads).
BUILDERS = {
    "iqa": "mapper.iqa.model:build_model",
    "segmentation": "mapper.seg.model:build_model",
    "croptype": "mapper.croptype.model:build_model",
    "fields": "mapper.fields.model:build_model",
}


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, corrupt or not the model asked for; the message names the fix."""


@dataclass
class Checkpoint:
    model: torch.nn.Module  # built from meta["arch"], weights loaded, in eval mode, on the CPU
    meta: dict  # checkpoint.json
    path: Path
    extra: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # extra tensor files by name

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tensors_for_file(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_checkpoint(
    directory: Path | str,
    model: torch.nn.Module,
    meta: dict[str, Any],
    extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write `model`'s weights and `meta` (kind, arch, classes, normalisation, input, training, …) as a
    checkpoint directory, atomically. `extra_tensors` {name: {key: tensor}} become `<name>.safetensors`.
    format, sha256, extra_files, mapper_version and created are filled in here. Returns the directory."""
    from safetensors.torch import save as to_safetensors

    from mapper import __version__
    from mapper.store.atomic import atomic_directory

    def write(path: Path, tensors: dict) -> str:
        data = to_safetensors(_tensors_for_file(tensors), metadata={"format": FORMAT})
        with open(path, "xb") as f:  # created by us, so with the user's umask (not 0600)
            f.write(data)
        return sha256_bytes(data)

    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks {', '.join(missing)}")
    if meta["kind"] not in KINDS:
        raise ValueError(f"checkpoint kind {meta['kind']!r} is not one of {', '.join(KINDS)}")
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        weights_sha = write(tmp / WEIGHTS_FILE, model.state_dict())
        extra_files = {}
        for name, tensors in (extra_tensors or {}).items():
            if not name.isidentifier():
                raise ValueError(f"extra tensor file name {name!r} must be an identifier")
            extra_files[f"{name}.safetensors"] = write(tmp / f"{name}.safetensors", tensors)
        full = {
            "format": FORMAT,
            **{k: v for k, v in meta.items() if k not in ("format", "sha256", "extra_files")},
            "sha256": weights_sha,
            "extra_files": extra_files,
            "mapper_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (tmp / META_FILE).write_text(json.dumps(full, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return directory


def update_checkpoint_meta(directory: Path | str, updates: dict[str, Any]) -> dict:
    """Set top-level entries of a checkpoint's checkpoint.json that do not describe its weights (e.g. the
    decision threshold of mapper.seg.calibrate), atomically; the weights and their sha256 stay as they are.
    Returns the new meta."""
    from mapper.store.atomic import atomic_write_text

    fixed = sorted(set(updates) & {*REQUIRED_META, "format", "sha256", "extra_files", "training"})
    if fixed:
        raise ValueError(f"{', '.join(fixed)} describe the weights of a checkpoint: not changed after training")
    meta = {**read_checkpoint_meta(directory), **updates}
    atomic_write_text(Path(directory) / META_FILE, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return meta


def read_checkpoint_meta(directory: Path | str) -> dict:
    """checkpoint.json of a checkpoint directory, with the files it names checked for presence."""
    directory = Path(directory)
    if not directory.is_dir():
        leftovers = sorted(directory.parent.glob(f".{directory.name}.old-*")) if directory.parent.is_dir() else []
        hint = (
            f"; {leftovers[0]} is the previous checkpoint, left by an interrupted save: rename it to {directory.name}"
            if leftovers
            else ""
        )
        raise CheckpointError(f"checkpoint {directory} not found (a checkpoint is a directory){hint}")
    missing = [name for name in (META_FILE, WEIGHTS_FILE) if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(
            f"checkpoint {directory} is incomplete: missing {', '.join(missing)}; re-train or re-copy the whole "
            "directory"
        )
    meta = read_json(directory / META_FILE, FORMAT, "a mapper checkpoint", "re-train or re-copy", CheckpointError,
                     required=(*REQUIRED_META, "sha256"))  # fmt: skip
    missing = [name for name in meta.get("extra_files", {}) if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(
            f"checkpoint {directory} is incomplete: missing {', '.join(missing)} (listed in {META_FILE}); "
            "re-copy the whole directory"
        )
    return meta


def arch_differences(have: dict, want: dict) -> list[str]:
    """'key (checkpoint X, expected Y)' for every top-level key whose value differs or is absent on one side."""
    out = []
    for key in sorted(set(have) | set(want)):
        a, b = have.get(key, "<absent>"), want.get(key, "<absent>")
        if a != b:
            out.append(f"{key} (checkpoint {a!r}, expected {b!r})")
    return out


def _read_verified(path: Path, expected: str) -> bytes:
    data = path.read_bytes()
    digest = sha256_bytes(data)
    if digest != expected:
        raise CheckpointError(f"{path} is corrupt: sha256 {digest} expected {expected}; re-train or re-copy")
    return data


def _builder(kind: str) -> Callable[[dict], torch.nn.Module]:
    import importlib

    module, _, fn = BUILDERS[kind].partition(":")
    return getattr(importlib.import_module(module), fn)


def load_checkpoint(
    directory: Path | str,
    kind: str,
    expect_arch: dict | None = None,
    build: Callable[[dict], torch.nn.Module] | None = None,
    load_extra: bool = False,
) -> Checkpoint:
    """Load and verify a checkpoint: files present, sha256 of the weights (and extra files), kind, and arch
    equal to `expect_arch` when given. The model is built by `build(arch)` (default: the kind's builder),
    loaded strictly and put in eval mode. `load_extra` also reads the extra tensor files."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    directory = Path(directory)
    meta = read_checkpoint_meta(directory)
    if meta["kind"] != kind:
        raise CheckpointError(
            f"checkpoint {directory} is a {meta['kind']!r} model, not {kind!r}; use a {kind} checkpoint"
        )
    if expect_arch is not None and meta["arch"] != expect_arch:
        diffs = arch_differences(meta["arch"], expect_arch)
        raise CheckpointError(
            f"checkpoint {directory} has another architecture; differing keys: {'; '.join(diffs)}. "
            "Use a checkpoint of this architecture (or the arch it was trained with)"
        )
    data = _read_verified(directory / WEIGHTS_FILE, meta["sha256"])
    try:
        state = load_safetensors(data)
    except SafetensorError as e:
        raise CheckpointError(
            f"{directory / WEIGHTS_FILE} is not a valid safetensors file ({e}); re-train or re-copy"
        ) from e
    if build is None:
        if kind not in BUILDERS:
            raise CheckpointError(f"no model builder for kind {kind!r} yet; known: {', '.join(BUILDERS)}")
        build = _builder(kind)
    model = build(meta["arch"])
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # tensor shapes that do not fit the arch
        raise CheckpointError(
            f"{directory / WEIGHTS_FILE} does not fit the arch in {META_FILE}: {e}; re-train or re-copy"
        ) from e
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing {', '.join(result.missing_keys[:5])}{' …' if len(result.missing_keys) > 5 else ''}")
        if result.unexpected_keys:
            extra = result.unexpected_keys
            parts.append(f"unexpected {', '.join(extra[:5])}{' …' if len(extra) > 5 else ''}")
        raise CheckpointError(
            f"{directory / WEIGHTS_FILE} does not fit the arch in {META_FILE} ({'; '.join(parts)}); re-train or re-copy"
        )
    model.eval()
    extra = {}
    if load_extra:
        for name, digest in meta.get("extra_files", {}).items():
            extra[name.removesuffix(".safetensors")] = load_safetensors(_read_verified(directory / name, digest))
    return Checkpoint(model, meta, directory, extra)
