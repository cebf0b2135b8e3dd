"""mapper: cropland mapping at 2 m from web-map satellite imagery (the CropLayer method)."""

__version__ = "0.1.0"
