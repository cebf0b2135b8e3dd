"""The time-series form every crop-type model sees, whatever the source (the world or a user's files).

A series is float32 surface reflectance (L2A digital number / 10 000) of shape (bands, T) on the model's
time steps: T = 43 steps of 5 days, centred on days of year 121, 126, …, 331 (CropNet's window, 1 May to
end of November). Bands are Sentinel-2's ten 10/20 m bands in this order. Datasets are (N, bands, T).
"""

from __future__ import annotations

import numpy as np

BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
FIRST_DAY = 121
STEP_DAYS = 5
N_STEPS = 43
STEP_DAYS_OF_YEAR = FIRST_DAY + STEP_DAYS * np.arange(N_STEPS)  # 121 … 331
SCALE = 10000.0  # L2A digital numbers per unit reflectance
NODATA_DN = 0  # L2A's nodata value
