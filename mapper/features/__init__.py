"""Block features: region properties of cropland masks, terrain."""
