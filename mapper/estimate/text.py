"""The printed estimate: one line per figure, value then basis; and the units people read (4 min 35 s, 1.2 GB)."""

from __future__ import annotations

from mapper.estimate.figure import Figure

_BYTES = (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3))
VALUE_WIDTH = 16
SHORT = ("blocks", "area", "storage", "time", "cpu_hours", "gpu_hours")  # and each source's tiles and price


def duration(seconds: float) -> str:
    """Seconds as people say them: 42 s, 4 min 35 s, 3.2 h, 12 days."""
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 90 * 60:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    days = seconds / 86400
    return f"{days:.1f} days" if days < 10 else f"{days:,.0f} days"


def size(n_bytes: float) -> str:
    for unit, scale in _BYTES:
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.1f} {unit}"
    return f"{n_bytes:.0f} B"


def _number(value: float) -> str:
    """0 decimals from 100 (and for 0), 1 from 10, else 2."""
    digits = 0 if abs(value) >= 100 or value == 0 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def shown(f: Figure) -> str:
    """A figure's value in its unit, as printed."""
    if f.value is None:
        return f.missing
    if f.unit in ("blocks", "tiles"):
        return f"{int(f.value):,}"
    if f.unit == "km2":
        return f"{_number(f.value)} km²"
    if f.unit == "USD":
        return f"{_number(f.value)} USD"
    if f.unit == "s":
        return duration(f.value)
    if f.unit == "bytes":
        return size(f.value)
    return f"{_number(f.value)} {f.unit}"


def _short(key: str) -> bool:
    return key in SHORT or key.startswith(("tiles.", "price."))


def render(estimate, bases: bool = True) -> str:
    """The estimate as a table; `bases=False` gives the short block `mapper run` prints as it starts."""
    gpus = f", {estimate.gpus} GPU(s)" if estimate.gpus else ", CPU only"
    head = (
        f"Estimate for {estimate.region}, sources {' + '.join(estimate.sources)}, before any work (times: "
        f"machine class {estimate.machine_class}{gpus})"
    )
    figures = estimate.figures if bases else [f for f in estimate.figures if _short(f.key)]
    values = [shown(f) for f in figures]
    label_w = max(len(f.label) for f in figures)
    value_w = max((len(v) for v in values if len(v) <= VALUE_WIDTH), default=0)  # a longer one runs over
    rows = [
        f"  {f.label:<{label_w}}  {v:>{value_w}}" + (f"  {f.basis}" if bases else "")
        for f, v in zip(figures, values, strict=True)
    ]
    return "\n".join([head, *rows])
