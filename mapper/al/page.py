"""The campaign's figures and page: learning curves (final-map IoU, semantic correctness and PCS of the models
in force against the blocks labelled, one line per campaign — e.g. `combined` against `random`), the selected
blocks on a map coloured by round, and one self-contained HTML page (figures embedded, opens from disk) in
the manner of `mapper report`, with every round's numbers."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from mapper.al.campaign import CampaignLayout, Ledger, read_identity, read_sample
from mapper.al.status import curve_rows
from mapper.store.atomic import atomic_write_text
from mapper.validation.stop import STOP_THRESHOLDS

METRICS = (("iou", "final-map IoU"), ("semantic_correctness", "semantic correctness"), ("pcs", "PCS"))


def _campaign(root: Path) -> tuple[dict, list[dict], Ledger]:
    layout = CampaignLayout(Path(root))
    identity = read_identity(layout.root)
    ledger = Ledger.load(layout)
    return identity, curve_rows(ledger), ledger


def _value(row: dict, key: str):
    """A round's value: pooled for IoU and semantic correctness; PCS averaged over the provinces measured."""
    if key != "pcs":
        return row["overall"].get(key)
    values = [p.get("pcs") for p in row["provinces"].values() if p.get("pcs") is not None]
    return sum(values) / len(values) if values else None


def learning_curves_png(campaigns: list[tuple[str, list[dict]]], out: Path, thresholds: dict | None = None,
                        unit: str = "blocks") -> Path:  # fmt: skip
    """One panel per stop criterion; the dashed line is the campaign's threshold."""
    thresholds = thresholds or STOP_THRESHOLDS
    from mapper.maps.plotting import figure, save_png

    fig = figure(13, 3.8)
    axes = fig.subplots(1, 3)
    fig.set_layout_engine("constrained")
    for ax, (key, title) in zip(axes, METRICS, strict=True):
        for label, rows in campaigns:
            pts = [(r["blocks"], _value(r, key)) for r in rows if _value(r, key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=label)
        ax.axhline(thresholds[key], color="grey", ls="--", lw=1, label=f"stop ≥ {thresholds[key]:g}")
        ax.set_xlabel(f"{unit} labelled")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save_png(fig, out)


def selected_map_png(identity: dict, ledger: Ledger, out: Path) -> Path:
    """The pool (grey), the validation sample (blue squares) and each round's selected blocks (by round)."""
    import math

    from matplotlib import colormaps

    from mapper.grid.admin import provinces_frame
    from mapper.grid.blocks import BLOCK_DEG, Block
    from mapper.maps.plotting import figure, save_png

    def centre(b):
        w, s, e, n = Block.parse(b).bounds
        return (w + e) / 2, (s + n) / 2

    provs = provinces_frame()
    provs = provs[provs["ADM1_PCODE"].isin(identity["pcodes"])]
    fig = figure(7, 6)
    ax = fig.subplots()
    fig.set_layout_engine("constrained")
    provs.boundary.plot(ax=ax, color="black", lw=0.8)
    layout = CampaignLayout(ledger.path.parent)
    pool = []
    for name, style in (("pool", {"color": "lightgrey"}), ("validation", {"color": "tab:blue"}),
                        ("decision", {"color": "tab:orange"})):  # fmt: skip
        pts = [centre(b) for b in read_sample(layout, name)]
        pool += pts
        if pts:
            ax.scatter(*zip(*pts, strict=True), s=10, marker="s", label=f"{name} sample", **style)
    cmap = colormaps["viridis"]
    rounds = [r for r in ledger.rounds if r["steps"].get("select")]
    for i, r in enumerate(rounds):
        pts = [centre(b) for b in r["steps"]["select"]["blocks"]]
        ax.scatter(*zip(*pts, strict=True), s=40, marker="s", color=cmap(i / max(len(rounds) - 1, 1)),
                   edgecolor="black", lw=0.4, label=f"round {r['round']}")  # fmt: skip
    lat = float(np.mean([c[1] for c in pool])) if pool else 0.0
    ax.set_aspect(1 / max(math.cos(math.radians(lat)), 0.1))
    ax.set_title(f"{identity['name']}: blocks selected for labelling ({BLOCK_DEG}° blocks)")
    ax.legend(fontsize=7, loc="best")
    return save_png(fig, out)


def write_campaign_report(root: Path | str, others=()) -> Path:
    root = Path(root)
    identity, rows, ledger = _campaign(root)
    layout = CampaignLayout(root)
    curves = [(f"{identity['name']} ({identity['strategy']})", rows)]
    for other in others:
        o_identity, o_rows, _ = _campaign(Path(other))
        curves.append((f"{o_identity['name']} ({o_identity['strategy']})", o_rows))
    from mapper.config import load_config

    thresholds = load_config([layout.config_file]).al.stop.model_dump()
    unit = "chips" if identity.get("kind") == "chips" else "blocks"
    curves_png = learning_curves_png(curves, layout.report_dir / "learning_curves.png", thresholds, unit)
    figures = [("Learning curves", curves_png)]
    if identity.get("kind") != "chips":  # chips have no place on the map
        map_png = selected_map_png(identity, ledger, layout.report_dir / "selected_blocks.png")
        figures.append(("Blocks selected", map_png))
    page = _page(identity, rows, figures)
    out = layout.report_dir / "index.html"
    atomic_write_text(out, page)
    return out


def _adopted(row: dict) -> str:
    return "" if row["round"] == 0 else ("yes" if row["adopted"] else "no")


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def _page(identity: dict, rows: list[dict], figures) -> str:
    unit = "chips" if identity.get("kind") == "chips" else "blocks"
    columns = ("round", f"{unit} labelled", "positive / negative", "polygons", "IoU", "semantic correctness",
               "adopted", "provinces (IoU, SC, PCS → verdict)")  # fmt: skip
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    body = []
    for r in rows:
        prov = "<br>".join(
            f"{html.escape(n)}: {_fmt(p.get('iou'))}, {_fmt(p.get('semantic_correctness'))}, {_fmt(p.get('pcs'))} → "
            + ("stop" if r["verdicts"].get(n, {}).get("stop") else "go on")
            for n, p in r["provinces"].items()
        )
        body.append(f"<tr><td>{r['round']}</td><td>{r['blocks']}</td><td>{r['positive']} / {r['negative']}</td>"
                    f"<td>{r['polygons']}</td><td data-key='iou'>{_fmt(r['overall'].get('iou'))}</td>"
                    f"<td>{_fmt(r['overall'].get('semantic_correctness'))}</td>"
                    f"<td>{_adopted(r)}</td><td>{prov}</td></tr>")  # fmt: skip
    imgs = "".join(
        f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'"
        f"><figcaption>{html.escape(t)}</figcaption></figure>"
        for t, p in figures
    )
    title = html.escape(f"mapper label campaign {identity['name']}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:1300px}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}img{max-width:100%}</style></head><body>"
            f"<h1>{title}</h1><p>{html.escape(', '.join(identity['provinces']))}; strategy "
            f"{html.escape(identity['strategy'])}, {identity['round_blocks']} {unit} a round; validation sample "
            f"{identity['samples']['validation']['blocks']} {unit}, pool {identity['samples']['pool']['blocks']}."
            f"</p><table>{head}{''.join(body)}</table>{imgs}</body></html>")  # fmt: skip
