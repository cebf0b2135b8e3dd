"""Crop statistics onto a grid (seed 003, equations 1-7): `mapper allocate RUN`."""
