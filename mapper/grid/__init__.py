"""Block grid, administrative units and the blocks of a region."""
