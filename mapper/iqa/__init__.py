"""Image quality of block mosaics (DESIGN.md §3; paper Sect. 3.1, Eq. 1 and Table 5).

`features`: the no-reference features that catch thin cloud — median Sobel gradient magnitude (sharpness)
and median Hue, Saturation, Lightness — computed exactly and fast on a full block.
"""
