"""Fields, not blobs: field instances at 2 m, a polygon per field, fiboa output and object-level evaluation.

    truth       the simulated world's fields on a block's z16 grid: instance labels and the 3-class map
    regions     compiled kernels: 4-connected regions of equal value, outlines, seeded watershed
    polygons    instance labels (or interior / boundary probabilities) → polygons per block, stitched over blocks
    fiboa       fields.parquet (fiboa 0.3 GeoParquet 1.1) and one GeoPackage per prefecture
    evaluate    object P / R / F1 at IoU > 0.5, extent IoU, boundary F within 1 px, area error
    baseline    classical delineation from the imagery's gradients inside the cropland mask (the floor)
    model       the field model (U-Net: background / interior / boundary per 2 m pixel) and `load_field_model`
    train       training it on the simulated world's fields (`mapper train fields`)
    stage       the run's fields stage: per block, piece labels and outlines inside its final mask
    outputs     the run's fields.parquet, GeoPackages and summary from its blocks; `mapper fields evaluate`
    paths       where a run keeps its fields (RUN/fields/) and the crop-type stage its crops per piece

Per block in (arrays on the block's exact z16 grid), polygons out, one stitch step over blocks: the shape a run
stage needs.
"""
