"""A run as a STAC catalog (`mapper export stac`): `catalog` builds and writes it, `items` makes a block's item,
`run_assets` the run-level files' assets, `rasters` the projection and band fields from GeoTIFF headers,
`summary` the collection's record of the run, `runinfo` reads the run directory."""
