"""The names Sentinel-2 files give their bands and dates: layer descriptions, tags, file names, dates files.

Band names are normalised to the short form the models use ("B02" → "B2", "b8a" → "B8A"); "SCL" is the
scene classification layer. Dates are datetime.date; a file's own date comes from its ACQUISITION_DATE or
TIFFTAG_DATETIME tag, else from its name (an S2 product's `_20200503T…` or any separate 8-digit YYYYMMDD).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

SCL = "SCL"

_BAND = re.compile(r"^B0?(\d{1,2})(A?)$", re.IGNORECASE)
# A band token in a file name, between separators: "T33UWP_20200503_B04_10m", "B8A.tif", "scl".
_BAND_TOKEN = re.compile(r"(?:^|[_\-. ])(B0?\d{1,2}A?|SCL)(?=$|[_\-. ])", re.IGNORECASE)
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:$|[T ])")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_TIFF_DATETIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2})")
_PRODUCT = re.compile(r"_(\d{4})(\d{2})(\d{2})T\d{6}")
_EIGHT_DIGITS = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)")
DATE_TAGS = ("ACQUISITION_DATE", "TIFFTAG_DATETIME")


class S2ReadError(ValueError):
    """Sentinel-2 files cannot be read as a series; the message names the file and the fix."""


def normalise_band(name: str | None) -> str | None:
    """'B02' / 'b2' → 'B2', 'B8A' → 'B8A', 'scl' → 'SCL'; None when `name` is not a band name."""
    if not name:
        return None
    text = name.strip()
    if text.upper() == SCL:
        return SCL
    m = _BAND.match(text)
    if m is None or not 1 <= int(m.group(1)) <= 12:
        return None
    return f"B{int(m.group(1))}{m.group(2).upper()}"


def band_order(name: str) -> tuple[int, str]:
    """Sentinel-2's own order: B1 … B8, B8A, B9 … B12, then SCL."""
    if name == SCL:
        return (99, "")
    m = _BAND.match(name)
    return (int(m.group(1)), m.group(2)) if m else (98, name)


def band_in_name(path: Path) -> str | None:
    """The one band a file name names ('…_B04_10m.tif' → 'B4'); None when it names none or several."""
    found = {normalise_band(m.group(1)) for m in _BAND_TOKEN.finditer(path.stem)}
    found.discard(None)
    return found.pop() if len(found) == 1 else None


def _date(y: str, m: str, d: str) -> dt.date | None:
    try:
        return dt.date(int(y), int(m), int(d))
    except ValueError:
        return None


def parse_date(text: str | None) -> dt.date | None:
    """'2020-05-03' (optionally with a time), '20200503' or '2020:05:03 10:30:21'; None otherwise."""
    if not text:
        return None
    text = text.strip()
    for pattern in (_ISO, _COMPACT, _TIFF_DATETIME):
        m = pattern.match(text)
        if m:
            return _date(*m.groups())
    return None


def date_from_tags(tags: dict[str, str]) -> dt.date | None:
    for key in DATE_TAGS:
        found = parse_date(tags.get(key))
        if found is not None:
            return found
    return None


def date_from_name(path: Path) -> dt.date | None:
    """An S2 product's sensing date ('_20200503T101559'), else the one valid 8-digit date in the name."""
    m = _PRODUCT.search(path.name)
    if m:
        return _date(*m.groups())
    found = {d for m in _EIGHT_DIGITS.finditer(path.stem) if (d := _date(*m.groups())) is not None}
    return found.pop() if len(found) == 1 else None


def read_dates_file(path: Path | str) -> list[dt.date]:
    """One date a line (YYYY-MM-DD or YYYYMMDD); blank lines and '#' comments are skipped."""
    path = Path(path)
    if not path.is_file():
        raise S2ReadError(f"dates file {path} not found; write one date a line, YYYY-MM-DD")
    dates = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        found = parse_date(text)
        if found is None:
            raise S2ReadError(f"{path} line {n}: {text!r} is not a date; write one date a line, YYYY-MM-DD")
        dates.append(found)
    if not dates:
        raise S2ReadError(f"dates file {path} holds no dates; write one date a line, YYYY-MM-DD")
    return dates


def as_dates(values) -> list[dt.date]:
    """User-given dates (date, datetime or text) as dates; a clear error for anything else."""
    out = []
    for v in values:
        if isinstance(v, dt.datetime):
            out.append(v.date())
        elif isinstance(v, dt.date):
            out.append(v)
        elif (found := parse_date(str(v))) is not None:
            out.append(found)
        else:
            raise S2ReadError(f"date {v!r} is not a date; give dates as YYYY-MM-DD")
    return out
