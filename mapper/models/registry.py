"""The model registry (configs/models.yaml): named architectures, and the checkpoints packaged with mapper.

    get_model_spec("iqa-resnet18-mini") -> ModelSpec(kind="iqa", arch={...full arch...}, input={"size": 128})
    resolve_checkpoint("iqa-default" | "path/to/ckpt") -> Path

Entries are validated strictly (unknown keys are errors), and an IQA arch is completed to the full dict the
model is built from (defaults filled in), which is what a checkpoint records and is compared against.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from mapper.config.models import StrictModel
from mapper.models.checkpoint import CheckpointError

REGISTRY_FILE = "models.yaml"


class ResNetArch(StrictModel):
    """A transformers ResNetConfig, as far as it shapes the network (num_labels included)."""

    model_type: Literal["resnet"] = "resnet"
    num_channels: int = Field(4, ge=1)  # R, G, B, nodata fraction (mapper.iqa.model)
    embedding_size: int = Field(ge=1)
    hidden_sizes: list[int]
    depths: list[int]
    layer_type: Literal["basic", "bottleneck"]
    hidden_act: Literal["relu", "gelu", "silu"] = "relu"
    downsample_in_first_stage: bool = False
    downsample_in_bottleneck: bool = False
    num_labels: int = Field(5, ge=2)

    @model_validator(mode="after")
    def _stages(self):
        if not self.depths or len(self.depths) != len(self.hidden_sizes):
            raise ValueError(f"depths {self.depths} and hidden_sizes {self.hidden_sizes} need one entry per stage")
        if min(self.depths) < 1 or min(self.hidden_sizes) < 1:
            raise ValueError("depths and hidden_sizes must be positive")
        return self


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
            data = {**data, "arch": ARCH_SCHEMAS[data["kind"]]().model_validate(data["arch"]).model_dump()}
        return data


def _mask2former_schema():
    from mapper.seg.model import Mask2FormerArch

    return Mask2FormerArch


ARCH_SCHEMAS = {"iqa": lambda: ResNetArch, "segmentation": _mask2former_schema}


def full_iqa_arch(arch: dict) -> dict:
    """An IQA arch with its defaults filled in (ValueError naming the problem if it is not one)."""
    try:
        return ResNetArch.model_validate(arch).model_dump()
    except ValidationError as e:
        raise ValueError(f"not a ResNet arch: {e}") from None


def _describe(err: ValidationError, where: str, prefix: str = "") -> str:
    lines = [f"invalid model registry {where}:"]
    for item in err.errors():
        loc = prefix + ".".join(str(p) for p in item["loc"])
        msg = "unknown key; remove it or check its spelling" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_registry(data: Any, where: str = REGISTRY_FILE) -> dict[str, ModelSpec]:
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ValueError(f"{where} must hold a mapping `models: {{name: {{kind, arch, input}}}}`")
    if set(data) != {"models"}:
        raise ValueError(f"{where}: unknown top-level keys {sorted(set(data) - {'models'})}; only `models` is allowed")
    out = {}
    for name, entry in data["models"].items():
        entry = entry or {}
        if entry.get("kind") in ARCH_SCHEMAS and isinstance(entry.get("arch"), dict):
            try:  # first on its own, so that errors name the key as arch.<key>
                ARCH_SCHEMAS[entry["kind"]]().model_validate(entry["arch"])
            except ValidationError as e:
                raise ValueError(_describe(e, f"{where}, model {name!r}", "arch.")) from None
        try:
            out[name] = ModelSpec.model_validate({**entry, "name": name})
        except ValidationError as e:
            raise ValueError(_describe(e, f"{where}, model {name!r}")) from None
    return out


@functools.cache
def load_model_registry(path: str | None = None) -> dict[str, ModelSpec]:
    """The registry: configs/models.yaml as packaged (or the YAML file at `path`)."""
    if path is None:
        text = resources.files("mapper.configs").joinpath(REGISTRY_FILE).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return parse_registry(yaml.safe_load(text), path or f"<packaged {REGISTRY_FILE}>")


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
