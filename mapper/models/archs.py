"""The architectures a model of the registry may have: the schemas that validate an arch dict strictly and
fill it out with its defaults, the form a checkpoint records and is compared against.

    iqa            ResNetArch: a transformers ResNetConfig (mapper.iqa.model builds the network)
    segmentation   Mask2FormerArch: a transformers Mask2FormerConfig with a ResNet or Swin backbone
                   (mapper.seg.model builds the network)

They live here, below the packages that build the networks, so that the registry can check every arch
without importing iqa/ or seg/ (those import mapper.models, never the other way round). No torch import.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from mapper.config.models import StrictModel


# ---------------------------------------------------------------------------------------------- IQA
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


# ---------------------------------------------------------------------------------------------- segmentation
class ResNetBackbone(StrictModel):
    model_type: Literal["resnet"] = "resnet"
    embedding_size: int = Field(ge=1)
    hidden_sizes: list[int] = Field(min_length=4, max_length=4)
    depths: list[int] = Field(min_length=4, max_length=4)
    layer_type: Literal["basic", "bottleneck"]
    hidden_act: Literal["relu", "gelu", "silu"] = "relu"


class SwinBackbone(StrictModel):
    model_type: Literal["swin"] = "swin"
    embed_dim: int = Field(ge=1)
    depths: list[int] = Field(min_length=4, max_length=4)
    num_heads: list[int] = Field(min_length=4, max_length=4)
    window_size: int = Field(7, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    drop_path_rate: float = Field(0.3, ge=0, lt=1)


Backbone = Annotated[ResNetBackbone | SwinBackbone, Field(discriminator="model_type")]


class Mask2FormerArch(StrictModel):
    """The settings of a Mask2Former that shape the network or its loss (a transformers Mask2FormerConfig)."""

    model_type: Literal["mask2former"] = "mask2former"
    backbone: Backbone
    num_channels: int = Field(3, ge=1)
    num_labels: int = Field(2, ge=2)  # background and cropland: mapper.seg.model.CLASSES
    feature_size: int = Field(256, ge=8)
    mask_feature_size: int = Field(256, ge=8)
    hidden_dim: int = Field(256, ge=8)
    encoder_feedforward_dim: int = Field(1024, ge=8)
    encoder_layers: int = Field(6, ge=1)
    decoder_layers: int = Field(10, ge=2)  # transformers counts the first (query) layer: 10 = 9 attention layers
    num_attention_heads: int = Field(8, ge=1)
    dim_feedforward: int = Field(2048, ge=8)
    num_queries: int = Field(100, ge=2)
    train_num_points: int = Field(12544, ge=16)
    oversample_ratio: float = Field(3.0, ge=1)
    importance_sample_ratio: float = Field(0.75, ge=0, le=1)
    no_object_weight: float = Field(0.1, ge=0)
    class_weight: float = Field(2.0, ge=0)
    mask_weight: float = Field(5.0, ge=0)
    dice_weight: float = Field(5.0, ge=0)

    @model_validator(mode="after")
    def _shapes_fit(self):
        if self.feature_size % 32 or self.mask_feature_size % 32:
            raise ValueError(
                f"feature_size {self.feature_size} and mask_feature_size {self.mask_feature_size} must be "
                "multiples of 32 (the pixel decoder normalises them in 32 groups)"
            )
        if self.hidden_dim % self.num_attention_heads or self.feature_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_dim {self.hidden_dim} and feature_size {self.feature_size} must be multiples of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        return self


# kind -> the schema its arch must fit
ARCH_SCHEMAS: dict[str, type[StrictModel]] = {"iqa": ResNetArch, "segmentation": Mask2FormerArch}


def full_arch(kind: str, arch: dict) -> dict:
    """An arch of `kind` with its defaults filled in (ValueError naming the problem if it is not one)."""
    schema = ARCH_SCHEMAS[kind]
    try:
        return schema.model_validate(arch).model_dump()
    except ValidationError as e:
        raise ValueError(f"not a {schema.__name__.removesuffix('Arch')} arch: {e}") from None


def full_iqa_arch(arch: dict) -> dict:
    return full_arch("iqa", arch)


def full_seg_arch(arch: dict) -> dict:
    return full_arch("segmentation", arch)
