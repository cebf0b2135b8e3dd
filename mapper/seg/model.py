"""The segmentation network: transformers' Mask2FormerForUniversalSegmentation built from a config.

**Arch.** configs/models.yaml names each variant (`seg-m2f-tiny` for CPUs; `seg-m2f-r50`, `seg-m2f-swin-t`,
`seg-m2f-swin-l` for GPUs). An arch is the Mask2Former settings plus a `backbone` (a transformers ResNet or
Swin config), validated strictly and filled out with defaults (`full_seg_arch`, its schema in
mapper.models.archs), the form a checkpoint records and is compared against. Nothing is downloaded:
the backbone is built from its config too.

**Classes.** Binary semantic segmentation with the background kept as a class: classes ("background",
"cropland"), so every labelled window has at least one target mask (a window without cropland has the
background mask alone) and the model's `num_labels` is 2 (+ the implicit no-object class).

**From queries to pixels** (`cropland_probability`). Mask2Former's semantic inference, done here at the
window's full resolution: the query mask logits (1/4 of the input) are upsampled bilinearly to the window
size, then p(class at pixel) ∝ Σ_q softmax(class logits_q)[class] · sigmoid(mask logit_q(pixel)); the
cropland probability is cropland / (background + cropland). The image processor's post-processing (which
resizes masks to 384 px) is not used.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from mapper.models.archs import full_seg_arch

if TYPE_CHECKING:
    import torch

CLASSES = ("background", "cropland")
CHANNELS = ("red", "green", "blue")
STAGES = ["stage1", "stage2", "stage3", "stage4"]


def _backbone_config(backbone: dict, num_channels: int):
    b = dict(backbone)
    kind = b.pop("model_type")
    if kind == "resnet":
        from transformers import ResNetConfig

        return ResNetConfig(**b, num_channels=num_channels, out_features=STAGES)
    from transformers import SwinConfig

    return SwinConfig(**b, num_channels=num_channels, out_features=STAGES)


@contextlib.contextmanager
def _quiet_transformers():
    """transformers warns that a ResNet backbone is "not a supported model" for Mask2Former. The warning is
    about pretrained hub weights; the network itself is built from the config and trained here."""
    from transformers.utils import logging as tf_logging

    level = tf_logging.get_verbosity()
    tf_logging.set_verbosity_error()
    try:
        yield
    finally:
        tf_logging.set_verbosity(level)


def mask2former_config(arch: dict):
    """The transformers Mask2FormerConfig of an arch dict (configs/models.yaml / checkpoint.json form)."""
    from transformers import Mask2FormerConfig

    a = full_seg_arch(arch)
    a.pop("model_type")
    num_labels = a.pop("num_labels")
    names = CLASSES if num_labels == len(CLASSES) else tuple(f"class_{i}" for i in range(num_labels))
    with _quiet_transformers():
        return Mask2FormerConfig(
            backbone_config=_backbone_config(a.pop("backbone"), a.pop("num_channels")),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
            **a,
        )


def build_model(arch: dict):
    """Mask2FormerForUniversalSegmentation from an arch dict, randomly initialised (weights come from a
    checkpoint)."""
    from transformers import Mask2FormerForUniversalSegmentation

    config = mask2former_config(arch)
    with _quiet_transformers():
        return Mask2FormerForUniversalSegmentation(config)


def cropland_probability(masks_queries_logits: torch.Tensor, class_queries_logits: torch.Tensor, size) -> torch.Tensor:
    """(B, H, W) float32 cropland probability at full resolution `size` = (H, W) (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    masks = F.interpolate(masks_queries_logits.float(), size=tuple(size), mode="bilinear", align_corners=False)
    classes = class_queries_logits.float().softmax(-1)[..., :-1]  # drop the no-object class
    semantic = torch.einsum("bqc,bqhw->bchw", classes, masks.sigmoid())
    return semantic[:, 1] / semantic.sum(1).clamp_min(1e-6)
