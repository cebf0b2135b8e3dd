"""Map products of a run, as plain functions over arrays, frames and paths: cropland area per unit in true
ground m², polygons, the final map (block COGs, VRT, preview), block maps, the gallery, plots, and area
statistics with PCS. Used by the run engine (mapper.run), validation, label rounds and crop types; imports
nothing above itself."""
