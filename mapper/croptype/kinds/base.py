"""What a crop-type model kind is, and the registry of kinds by name.

A kind is a class in its own module of this package, registered with `@register`: it fits on parcel datasets,
predicts the four taxonomy levels of (N, bands, T) series, saves itself to a directory and loads from one.
`mapper croptype train --model` offers the registered names; `mapper croptype evaluate|map` and the run's
crop-type stage load whichever kind a model directory holds (`load_model`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from mapper.croptype.dataset import ParcelDataset
from mapper.croptype.taxonomy import Taxonomy

# The packaged model's kind: a directory no kind recognises is read as one, so its loader names what is missing.
DEFAULT_KIND = "cropnet"
_REGISTRY: dict[str, type[CropTypeModel]] = {}


class CropTypeModel(ABC):
    """A crop-type model of some kind, as training, evaluation and the map stage use it."""

    kind: ClassVar[str]  # the name `mapper croptype train --model` takes
    taxonomy: Taxonomy  # what it predicts
    bands: list[str]  # the band names of its input series, in order
    steps: list[int]  # the days of year of its input's time steps

    @property
    def uses_prior(self) -> bool:
        """Whether it takes last year's leaf (`prior=` of predict)."""
        return False

    @classmethod
    @abstractmethod
    def holds(cls, path: Path) -> bool:
        """Whether the model directory at `path` is of this kind (by its files)."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path, taxonomy: Taxonomy | None = None, bands: Sequence[str] | None = None,
             steps: Sequence[int] | None = None) -> CropTypeModel:  # fmt: skip
        """The saved model, checked against the data's taxonomy, bands and steps when given (CheckpointError
        naming the difference)."""

    @classmethod
    @abstractmethod
    def fit(cls, train: ParcelDataset, val: ParcelDataset, taxonomy: Taxonomy, cfg, trees: int,
            log: Callable[[str], None]) -> tuple[CropTypeModel, dict]:  # fmt: skip
        """(the model trained on `train`, what its training adds to the record); `val` may steer it (early
        stopping). `cfg` is the CropTrainConfig and `trees` the forest size: a kind takes what applies to it."""

    @abstractmethod
    def predict(self, X: np.ndarray, prior: np.ndarray | None = None, batch_size: int = 512) -> dict:
        """Of (N, bands, T) reflectance series: leaf (N,), code (N,), levels (N, 4) the leaf's path, leaf_prob
        (N,) and level_probs [4 × (N, C_level)]; a kind with a head per level also gives raw_levels (N, 4),
        each head's own argmax."""

    @abstractmethod
    def save(self, path: Path, training: dict) -> Path:
        """Write the model to the directory `path` (atomically), with `training` as its training record."""

    def to(self, device: str | None) -> None:  # noqa: B027  (a kind without a device keeps this)
        """Run on `device` (None: a GPU when there is one, if the kind uses one)."""


def register(cls: type[CropTypeModel]) -> type[CropTypeModel]:
    """Class decorator: make the kind known by its name."""
    if cls.kind in _REGISTRY and _REGISTRY[cls.kind] is not cls:
        raise ValueError(f"two crop-type model kinds are named {cls.kind!r}; rename one")
    _REGISTRY[cls.kind] = cls
    return cls


def kind_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def get_kind(name: str) -> type[CropTypeModel]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown crop-type model kind {name!r}; known: {', '.join(kind_names())}")
    return _REGISTRY[name]


def load_model(path: Path | str, taxonomy: Taxonomy | None = None, bands: Sequence[str] | None = None,
               steps: Sequence[int] | None = None) -> CropTypeModel:  # fmt: skip
    """The model saved at `path`, of whichever kind its files say."""
    path = Path(path)
    kind = next((k for k in _REGISTRY.values() if k.holds(path)), _REGISTRY[DEFAULT_KIND])
    return kind.load(path, taxonomy, bands, steps)


def level_probabilities(leaf_probs: np.ndarray, taxonomy: Taxonomy) -> list[np.ndarray]:
    """[4 × (N, C_level)] of (N, n_leaves) leaf probabilities: a class's probability is the sum of its leaves'."""
    out = []
    for level, size in enumerate(taxonomy.sizes):
        member = np.zeros((taxonomy.n_leaves, size))
        member[np.arange(taxonomy.n_leaves), taxonomy.paths[:, level]] = 1.0
        out.append(leaf_probs @ member)
    return out
