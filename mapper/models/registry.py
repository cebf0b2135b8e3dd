"""The model registry (configs/models.yaml): named architectures, and the checkpoints packaged with mapper.

    get_model_spec("iqa-resnet18-mini") -> ModelSpec(kind="iqa", arch={...full arch...}, input={"size": 128})
    resolve_checkpoint("iqa-default" | "path/to/ckpt") -> Path

Entries are validated strictly by the one config loader (unknown keys are errors, named as in every config),
and an arch is completed to the full dict the model is built from (defaults filled in, mapper.models.archs),
which is what a checkpoint records and is compared against.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from mapper.config.loader import read_yaml, validate_config
from mapper.config.models import ConfigError, StrictModel
from mapper.models.archs import ARCH_SCHEMAS
from mapper.models.checkpoint import CheckpointError

REGISTRY_FILE = "models.yaml"


class InputSpec(StrictModel):
    size: int = Field(ge=16, le=2048)  # IQA: the block is downsampled to size × size; segmentation: window size
    overlap: int = Field(0, ge=0)  # segmentation: pixels shared by neighbouring windows

    @model_validator(mode="after")
    def _overlap(self):
        if self.overlap * 2 > self.size:
            raise ValueError(f"overlap {self.overlap} must be at most half the window size {self.size}")
        return self


class ModelSpec(StrictModel):
    name: str = ""
    kind: Literal["iqa", "segmentation"]
    description: str = ""
    arch: dict[str, Any]
    input: InputSpec

    @model_validator(mode="before")
    @classmethod
    def _full_arch(cls, data):
        """An arch is filled out to its full dict (ResNet for IQA, Mask2Former for segmentation), the form
        checkpoints compare."""
        if isinstance(data, dict) and isinstance(data.get("arch"), dict) and data.get("kind") in ARCH_SCHEMAS:
            data = {**data, "arch": ARCH_SCHEMAS[data["kind"]].model_validate(data["arch"]).model_dump()}
        return data


class RegistryFile(StrictModel):
    """The file's shape: `models: {name: {kind, arch, input}}`; each entry is then checked as a ModelSpec."""

    models: dict[str, dict[str, Any] | None]


def parse_registry(data: Any, where: str = REGISTRY_FILE) -> dict[str, ModelSpec]:
    """The ModelSpecs of a registry mapping; ConfigError (a ValueError) naming the entry, the key and the fix."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping `models: {{name: {{kind, arch, input}}}}`")
    source = f"from {where}"
    out = {}
    for name, entry in validate_config(RegistryFile, data, source, "model registry").models.items():
        entry = entry or {}
        what = f"model registry entry {name!r}"
        if entry.get("kind") in ARCH_SCHEMAS and isinstance(entry.get("arch"), dict):
            # first on its own, so that errors name the key as arch.<key>
            validate_config(ARCH_SCHEMAS[entry["kind"]], entry["arch"], source, what, prefix="arch")
        out[name] = validate_config(ModelSpec, {**entry, "name": name}, source, what)
    return out


@functools.cache
def load_model_registry(path: str | None = None) -> dict[str, ModelSpec]:
    """The registry: configs/models.yaml as packaged (or the YAML file at `path`)."""
    if path is None:
        where = f"<packaged {REGISTRY_FILE}>"
        data = read_yaml(where, resources.files("mapper.configs").joinpath(REGISTRY_FILE).read_text(encoding="utf-8"))
    else:
        where, data = path, read_yaml(path)
    return parse_registry(data, where)


def get_model_spec(name: str, kind: str | None = None) -> ModelSpec:
    registry = load_model_registry()
    names = [n for n, s in registry.items() if kind is None or s.kind == kind]
    if name not in names:
        raise ValueError(f"unknown model {name!r}; known{' ' + kind if kind else ''} models: {', '.join(names)}")
    return registry[name].model_copy(deep=True)


# ---------------------------------------------------------------------------------------------- packaged
def packaged_checkpoints() -> dict[str, Path]:
    """Checkpoints shipped under mapper/data/models/<name>/ (name -> directory)."""
    root = resources.files("mapper.data").joinpath("models")
    if not root.is_dir():
        return {}
    return {p.name: Path(str(p)) for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}


def resolve_checkpoint(spec: str | Path) -> Path:
    """A checkpoint directory from a path, or from the name of a packaged checkpoint ('iqa-default')."""
    path = Path(spec)
    if path.exists():
        return path
    packaged = packaged_checkpoints()
    if str(spec) in packaged:
        return packaged[str(spec)]
    known = ", ".join(sorted(packaged)) or "none"
    raise CheckpointError(f"checkpoint {spec} not found: not a directory, nor a packaged checkpoint ({known})")
