"""Calendar months as composite steps: the public datasets are monthly (CCD: June-October, H2Crop: January-
December), mapper's native series are 43 five-day steps.

Compositing a month takes exactly that month's days of its year (centre = the month's middle day, half window
= half its length, so February of a leap year is 29 days and no date falls in two months). The dataset's
steps are the months' middle days in a non-leap year (REFERENCE_YEAR), whatever the year: a model trained
on one year's months then applies to another's, and datasets of several years share one step grid.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

REFERENCE_YEAR = 2023  # non-leap: the steps a monthly dataset is labelled with
ALL_MONTHS = tuple(range(1, 13))


def _days(year: int, month: int) -> tuple[int, int]:
    """(first day of year, number of days) of a month."""
    first = dt.date(year, month, 1)
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    return first.timetuple().tm_yday, (nxt - first).days


def month_windows(year: int, months) -> tuple[np.ndarray, np.ndarray]:
    """(centres, half windows) in days of `year` for `composite(stack, steps=centres, half_window=halves)`."""
    spans = [_days(year, m) for m in months]
    centres = np.array([first + (n - 1) / 2 for first, n in spans])
    return centres, np.array([n / 2 for _, n in spans])


def month_steps(months) -> np.ndarray:
    """The steps (days of year, integers) a monthly dataset is labelled with: REFERENCE_YEAR's mid-month days."""
    return np.floor(month_windows(REFERENCE_YEAR, months)[0]).astype(np.int64)


def parse_months(text: str) -> tuple[int, ...]:
    """"6-10" or "5,6,7" -> ascending months; ValueError naming the fix otherwise."""
    out: set[int] = set()
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"months {text!r}: write a range like 6-10 or a list like 5,6,7") from None
        if not 1 <= a <= b <= 12:
            raise ValueError(f"months {text!r}: months are 1-12, ranges ascending")
        out.update(range(a, b + 1))
    if not out:
        raise ValueError(f"months {text!r}: name at least one month")
    return tuple(sorted(out))
