"""The grids: the Web Mercator tile and pixel grid (tilegrid), the 0.05° block grid, administrative units and
the blocks of a region. Pure geometry, below imagery/: sources and mosaics use these grids, never the reverse."""
