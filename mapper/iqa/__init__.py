"""Image quality of block mosaics (DESIGN.md §3; paper Sect. 3.1, Eq. 1 and Table 5).

`features`: the no-reference features that catch thin cloud — median Sobel gradient magnitude (sharpness)
and median Hue, Saturation, Lightness — computed exactly and fast on a full block.
`model`: the coverage-type classifier (Planting, Non-planting, Cloudy, Snow/Ice, Nodata), a ResNet built
from a config over a 128 px view of the block; `train`: training and evaluation from labelled blocks.
"""
