"""`mapper report`: one self-contained HTML page about a run (every figure embedded as a PNG data URI, no
external file, script or font), opened from disk in any browser.

    write_report(run_dir, out=None, labels=None, statistics=None, extra_rounds=0, progress=False,
                 reuse=True) -> Report

The numbers are `validate_run`'s, so the page and `mapper validate --json` agree: the run's validation.json
when it was computed from the same inputs (mapper.validation.basis; a province's validation can take
hours), else computed now (and saved). Every number shown from the validation carries `data-key` (its path in
the validation JSON, e.g. `pixel_iou.final.iou`, `provinces.0.pcs`) and `data-value` (the exact JSON value),
so a test or a script can check the page against the JSON; a number with a 95 % interval shows it beside the
value ("0.912 (95 % CI 0.890-0.930)"; the interval's own key is `…ci95`). A figure that cannot be drawn becomes a note
on the page and in Report.problems; the page is still written. A small inline script counts the figures
the browser decoded and shows a banner when one did not load (`body[data-images-loaded]`)."""

from __future__ import annotations

import base64
import html
import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mapper.validation.report_figures import (
    area_vs_statistics_png,
    block_iou_png,
    correctness_png,
    fields_over_imagery_png,
    importance_png,
)

REPORT_FILE = Path("report") / "index.html"
COVERAGE_COLOURS = {
    "Planting": "#1a9850",
    "Non-planting": "#d8b365",
    "Cloudy": "#9ecae1",
    "Snow/Ice": "#f0f0f0",
    "Nodata": "#404040",
}
JPEG_ABOVE_BYTES = 1_500_000
DECISION_COLOURS = {"Neither": "#bdbdbd", "Only A": "#1f78b4", "Only B": "#e6550d", "Merge": "#6a3d9a"}


@dataclass
class Report:
    path: Path
    validation: dict
    figures: list[str] = field(default_factory=list)  # titles of the figures embedded
    problems: list[str] = field(default_factory=list)  # figures that could not be drawn, and why


@dataclass
class _Figure:
    title: str
    paper: str  # the CropLayer paper's figure it corresponds to
    caption: str
    png: bytes | None = None
    problem: str | None = None
    mime: str = "image/png"


def write_report(run_dir: Path | str, out: Path | str | None = None, labels=None, statistics=None,
                 extra_rounds: int = 0, progress: bool = False, reuse: bool = True) -> Report:  # fmt: skip
    """Validate the run (see mapper.validation.validate; with `reuse` the run's validation.json is taken as
    it is when it was computed from the same inputs) and write the HTML page (default
    RUN_DIR/report/index.html) atomically."""
    from mapper.validation.validate import validate_run

    from mapper.store.atomic import atomic_write_text

    run_dir = Path(run_dir)
    validation = validate_run(run_dir, labels=labels, statistics=statistics, extra_rounds=extra_rounds,
                              progress=progress, write=True, reuse=reuse)  # fmt: skip
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    with tempfile.TemporaryDirectory(prefix="mapper-report-") as tmp:
        figures = _figures(run_dir, validation, Path(tmp))
    page = _page(run_dir, validation, figures)
    atomic_write_text(out, page)
    return Report(
        out,
        validation,
        [f.title for f in figures if f.png is not None],
        [f"{f.title}: {f.problem}" for f in figures if f.problem],
    )


# ---------------------------------------------------------------------------------------------- figures
def _figures(run_dir: Path, validation: dict, tmp: Path) -> list[_Figure]:
    table, table_problem = _block_table(run_dir)
    region, sources = _region_and_sources(run_dir)
    semantic = validation.get("semantic_correctness") or {}
    figs: list[_Figure] = []

    def add(title, paper, caption, draw):
        fig = _Figure(title, paper, caption)
        png = tmp / f"{len(figs)}.png"
        try:
            draw(png)
            fig.png, fig.mime = _compact(png.read_bytes())
        except Exception as e:  # one figure must not cost the whole report; the page says what failed
            fig.problem = f"{type(e).__name__}: {e}"
        figs.append(fig)

    def needs_table(draw):
        def wrapped(png):
            if table is None:
                raise ValueError(table_problem)
            draw(png)

        return wrapped

    from mapper.maps.block_maps import area_fraction_png, block_category_png

    add("Cropland area fraction per block", "Fig. 17",
        "Share of each mapped block's land that the final map calls cropland.",
        needs_table(lambda png: area_fraction_png(table, png, region_geometry=region, title="Final map")))  # fmt: skip
    for prefix, source in zip(("a", "b"), sources, strict=False):
        add(f"Coverage type of {source}", "Figs. 6-7",
            f"The image-quality model's coverage type of each block's {source} mosaic.",
            needs_table(lambda png, p=prefix, s=source: block_category_png(
                table, f"{p}_coverage", COVERAGE_COLOURS, png, region_geometry=region,
                title=f"Coverage type, {s}", legend_title="coverage type")))  # fmt: skip
    add("Integration decision per block", "Fig. 10",
        "Which source(s) the integration model kept for each block (Merge = union of both masks).",
        needs_table(lambda png: block_category_png(table, "decision", DECISION_COLOURS, png, region_geometry=region,
                                                   title="Integration decision", legend_title="decision")))  # fmt: skip
    add("Semantic correctness distribution", "Fig. 9",
        "Classes of the blocks per map: TP and TN are correct; FP, Noise and Artifact are not.",
        lambda png: correctness_png(semantic, png))  # fmt: skip
    add("Per-block IoU", "",
        "Distribution of the pixel IoU of each block against the truth, per map.",
        lambda png: _block_iou(validation, png))  # fmt: skip
    add("Area against the statistics", "Figs. 12 and 16",
        "Mapped cropland per province and prefecture against the reference statistic, and the deviation "
        "with the ±10 % consistency band (whiskers: the 95 % interval of a sample estimate).",
        lambda png: area_vs_statistics_png(validation, png))  # fmt: skip
    add("Feature importance of the decision models", "Fig. 11",
        "Permutation importance measured on the models' held-out 20 % when they were trained.",
        lambda png: importance_png(_model_metrics(run_dir), png))  # fmt: skip
    for summary_path in sorted((run_dir / "compare").glob("*/compare.json")):
        for fig_title, fig_file, fig_caption in _comparison_figures(summary_path):
            draw = lambda png, f=fig_file: _copy_run_png(f, png, "`mapper compare`")  # noqa: E731
            add(fig_title, "Figs. 14-15", fig_caption, draw)
    for name, title, caption in (
        ("map_preview.png", "Final map preview", "The final map, decimated (cropland green, no imagery white)."),
        ("blocks.png", "Mapped blocks", "A dozen mapped blocks: imagery with the final cropland over it."),
    ):
        add(title, "", caption, lambda png, n=name: _copy_run_png(run_dir / "report" / n, png))
    if (run_dir / "croptype" / "summary.json").is_file():  # `mapper croptype map` ran
        for name, title, caption in (
            ("croptype_blocks.png", "Crop types of mapped blocks",
             "Level-4 crop of every field inside the final cropland (10 m, fields delineated by their series)."),
            ("croptype_confusion.png", "Crop types against the truth",
             "Area confusion of the mapped crops with the simulated world's, over pixels cropland in both."),
        ):  # fmt: skip
            if name == "croptype_confusion.png" and not (run_dir / "report" / name).is_file():
                continue  # no truth for real imagery
            writer = "`mapper croptype map`"
            add(title, "", caption, lambda png, n=name, w=writer: _copy_run_png(run_dir / "report" / n, png, w))
    if (run_dir / "fields" / "fields.parquet").is_file():  # `mapper fields` ran
        add("Fields over imagery", "", _fields_caption(run_dir),
            lambda png: _fields_over_imagery(run_dir, table, sources, png))  # fmt: skip
    for crop_png in _largest_allocated(run_dir):
        add(f"Allocated {crop_png.stem.replace('_', ' ')}", "",
            "Harvested hectares per km² of each grid cell after equations 1-7 (`mapper allocate`).",
            lambda png, f=crop_png: _copy_run_png(f, png, "`mapper allocate`"))  # fmt: skip
    return figs


def _fields_caption(run_dir: Path) -> str:
    """The fields' count and area (fields/summary.json) and, where `mapper fields evaluate` ran, their scores."""
    summary = _read_json(run_dir / "fields" / "summary.json")
    text = (f"Field polygons (fields/fields.parquet, yellow) over the imagery they were delineated on, at full "
            f"resolution: the 600 × 600 px where the block with the most cropland is densest. "
            f"{summary.get('fields', 0):,} fields, {summary.get('area_ha', 0.0):,.1f} ha")  # fmt: skip
    if summary.get("model"):
        text += f" (model {summary['model']})"
    ev = _read_json(run_dir / "fields" / "evaluation.json")
    if ev:
        text += (f"; against the world's fields: precision {_fmt(ev.get('precision'))}, recall "
                 f"{_fmt(ev.get('recall'))}, F1 {_fmt(ev.get('f1'))} (IoU > 0.5), extent IoU "
                 f"{_fmt(ev.get('extent_iou'))}, boundary F {_fmt(ev.get('boundary_f'))}, median area error "
                 f"{_fmt(ev.get('median_area_error'))}")  # fmt: skip
    return text + "."


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _fields_over_imagery(run_dir: Path, table, sources: list[str], png: Path) -> None:
    """The block with the most cropland that has fields, on the imagery of the source its fields were drawn on
    (B's for an "Only B" decision, A's otherwise: mapper.fields.stage.imagery_order)."""
    import geopandas as gpd

    from mapper.fields.paths import block_labels_path
    from mapper.fields.stage import imagery_order

    with_fields = {p.stem for p in (run_dir / "fields" / "blocks").glob("*.tif")}
    if table is not None and "cropland_m2" in table:
        rows = table[table["block_id"].isin(with_fields)].sort_values("cropland_m2", ascending=False)
        block, decision = (rows["block_id"].iloc[0], rows["decision"].iloc[0]) if len(rows) else (None, None)
    else:
        block, decision = (min(with_fields) if with_fields else None), None
    if block is None or not block_labels_path(run_dir, block).is_file():
        raise FileNotFoundError(f"no block of {run_dir} has fields/blocks/<block>.tif")
    order = imagery_order(decision, sources) if len(sources) == 2 else sources
    mosaic = next((m for s in order if (m := run_dir / "mosaics" / s / f"{block}.tif").is_file()), None)
    if mosaic is None:
        raise FileNotFoundError(f"no mosaic of block {block} under {run_dir / 'mosaics'}")
    fields = gpd.read_parquet(run_dir / "fields" / "fields.parquet")
    fields_over_imagery_png(mosaic, run_dir / "final" / f"{block}.tif", fields, png,
                            title=f"Block {block}, {mosaic.parent.name} imagery, field outlines")  # fmt: skip


def _largest_allocated(run_dir: Path, n: int = 2) -> list[Path]:
    """The maps of the n crops with the most allocated hectares, when `mapper allocate` ran."""
    import re

    import pandas as pd

    table = run_dir / "allocation" / "units.csv"
    if not table.is_file():
        return []
    totals = pd.read_csv(table).groupby("crop")["allocated_ha"].sum().sort_values(ascending=False)
    slugs = [re.sub(r"[^a-z0-9]+", "_", str(c).lower()).strip("_") for c in totals.index[:n]]
    return [p for p in (run_dir / "allocation" / "png" / f"{s}.png" for s in slugs) if p.is_file()]


def _block_table(run_dir: Path):
    import geopandas as gpd

    path = run_dir / "blocks.parquet"
    if not path.is_file():
        return None, f"{path} is missing (the run has not written its outputs; `mapper run --resume {run_dir}`)"
    return gpd.read_parquet(path), None


def _region_and_sources(run_dir: Path):
    from mapper.validation.run_data import open_run

    run = open_run(run_dir)
    try:
        return run.region.geometry, list(run.sources)
    finally:
        run.close()


def _block_iou(validation: dict, png: Path) -> None:
    blocks = validation.get("blocks") or []
    if not any(b.get("truth") for b in blocks):
        raise ValueError("no block was judged against a truth (give --labels, or map the simulated world)")
    block_iou_png(blocks, validation["pixel_iou"]["maps"], png)


def _model_metrics(run_dir: Path) -> dict[str, dict]:
    """metrics.json of the run's decision models (config run.models.decisions)."""
    from mapper.config import load_config
    from mapper.models.registry import resolve_checkpoint

    spec = load_config([run_dir / "config.yaml"]).run.models.decisions
    root = Path(resolve_checkpoint(spec))
    out = {}
    for kind in ("correctness", "integration"):
        path = root / kind / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the decision models {spec!r} carry no metrics")
        out[kind] = json.loads(path.read_text(encoding="utf-8"))
    return out


def _compact(png: bytes) -> tuple[bytes, str]:
    """A figure as embedded: PNG, except a large one (the gallery of imagery) as a JPEG of a fraction of the
    size, so the page stays quick to open."""
    if len(png) <= JPEG_ABOVE_BYTES:
        return png, "image/png"
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(buf, format="JPEG", quality=88)
    return buf.getvalue(), "image/jpeg"


def _comparison_figures(summary_path: Path) -> list[tuple[str, Path, str]]:
    """The two figures of a `mapper compare` result in RUN_DIR/compare/NAME/, with its numbers as caption."""
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        other = Path(summary["other"]["path"]).name
        pixel, block = summary["pixel"], summary["block_level"]
        numbers = (f"IoU {_fmt(pixel.get('iou'))}; over the {block['blocks']} blocks with AF > {block['min_af']:g}, "
                   f"median Div of area fraction {_pct(block['area_fraction']['median_div'])} and of edge density "
                   f"{_pct(block['edge_density']['median_div'])}")  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as e:
        numbers, other = f"(its compare.json could not be read: {e})", summary_path.parent.name
    folder = summary_path.parent
    return [
        (f"Deviation map against {other}", folder / "deviation_map.png",
         f"`mapper compare` of this run (C) with {other} (T): Div = (T − C)/C per block. {numbers}."),
        (f"Deviation versus slope against {other}", folder / "deviation_vs_slope.png",
         "Blocks by their median slope and their Div of area fraction and edge density."),
    ]  # fmt: skip


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:+.1f} %"


def _copy_run_png(src: Path, png: Path, writer: str = "`mapper run` at its end") -> None:
    if not src.is_file():
        raise FileNotFoundError(f"{src} is missing (written by {writer})")
    png.write_bytes(src.read_bytes())


# ---------------------------------------------------------------------------------------------- the page
def _num(key: str, value, text: str | None = None) -> str:
    """A number of the validation as a table cell carrying its JSON path and exact value."""
    shown = text if text is not None else _fmt(value)
    return f'<td class="num" data-key="{html.escape(key)}" data-value=\'{html.escape(json.dumps(value))}\'>{shown}</td>'


def _with_ci(value, ci) -> str | None:
    """A value with its 95 % interval ("0.912 (95 % CI 0.890-0.930)"); None (the plain number) without one."""
    from mapper.validation.intervals import format_ci

    return html.escape(format_ci(value, ci)) if value is not None and ci else None


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    return html.escape(str(value))


def _page(run_dir: Path, validation: dict, figures: list[_Figure]) -> str:
    run = validation.get("run", {})
    title = f"mapper report — {run.get('region', run_dir.name)}"
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        _run_section(run_dir, validation),
        _pixel_section(validation),
        _semantic_section(validation),
        _province_section(validation),
        _croptype_section(run_dir),
        _allocation_section(run_dir),
        _figure_section(figures),
    ]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<footer>Written by <code>mapper report</code> on {generated}. The numbers are those of "
                 "<code>mapper validate --json</code> (also in the run's validation.json).</footer>")  # fmt: skip
    return _HTML.format(title=html.escape(title), style=_STYLE, body="\n".join(parts), script=_SCRIPT)


def _run_section(run_dir: Path, validation: dict) -> str:
    run = validation.get("run", {})
    missing = validation.get("missing", {})
    rows = [
        ("run directory", html.escape(str(run_dir.resolve()))),
        ("region", html.escape(f"{run.get('region')} ({run.get('region_kind')})")),
        ("sources", html.escape(", ".join(run.get("sources", [])))),
        ("blocks", f"{run.get('blocks_done', 0):,} mapped of {run.get('blocks_planned', 0):,} planned"),
    ]
    if run.get("world_seed") is not None:
        rows.append(("simulated world", f"seed {run['world_seed']}"))
    if validation.get("reused"):
        rows.append(("validation", f"{html.escape(validation['reused'])} (computed earlier from the same inputs)"))
    notes = []
    if missing.get("blocks_pending"):
        notes.append(f"{len(missing['blocks_pending']):,} block(s) pending: finish with "
                     f"<code>mapper run --resume {html.escape(str(run_dir))}</code>")  # fmt: skip
    if missing.get("blocks_failed"):
        notes.append(f"{len(missing['blocks_failed']):,} block(s) failed (see run.log and the validation)")
    for f in missing.get("files", []):
        notes.append(f"missing: {html.escape(str(f))}")
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    note = "".join(f'<p class="warn">{n}</p>' for n in notes)
    return f'<section><h2>Run</h2><table class="kv">{body}</table>{note}</section>'


def _pixel_section(validation: dict) -> str:
    pix = validation.get("pixel_iou") or {}
    maps = [m for m in pix.get("maps", []) if isinstance(pix.get(m), dict)]
    head = "<tr><th>map</th><th>IoU</th><th>precision</th><th>recall</th><th>blocks</th></tr>"
    rows = []
    for m in maps:
        e = pix[m]
        cells = _num(f"pixel_iou.{m}.iou", e.get("iou"), _with_ci(e.get("iou"), e.get("ci95")))
        cells += "".join(_num(f"pixel_iou.{m}.{k}", e.get(k)) for k in ("precision", "recall", "blocks"))
        rows.append(f"<tr><th>{html.escape(m)}</th>{cells}</tr>")
    truth = html.escape(str(pix.get("truth") or "no truth: give --labels"))
    note = f"<p>Against {truth}; in true ground area. {html.escape(str(pix.get('no_imagery', '')))}</p>"
    return f"<section><h2>1. Pixel level</h2>{note}<table>{head}{''.join(rows)}</table></section>"


def _semantic_section(validation: dict) -> str:
    sem = validation.get("semantic_correctness") or {}
    maps = [m for m in sem.get("maps", []) if isinstance(sem.get(m), dict)]
    head = "<tr><th>map</th><th>correct (TP + TN)</th><th>blocks</th><th>from</th><th>model's rate</th></tr>"
    rows = []
    for m in maps:
        e = sem[m]
        cells = _num(f"semantic_correctness.{m}.rate", e.get("rate"), _with_ci(e.get("rate"), e.get("ci95")))
        cells += _num(f"semantic_correctness.{m}.n", e.get("n"))
        cells += f"<td>{html.escape(str(e.get('from', '')))}</td>"
        cells += _num(f"semantic_correctness.{m}.model_rate", e.get("model_rate"))
        rows.append(f"<tr><th>{html.escape(m)}</th>{cells}</tr>")
    return f"<section><h2>2. Block level</h2><table>{head}{''.join(rows)}</table></section>"


_AREA_KEYS = ("mapped_ha", "statistic_ha", "pcs", "within_10pct")


def _province_section(validation: dict) -> str:
    head = ("<tr><th>province</th><th>mapped ha</th><th>statistic ha</th><th>PCS</th><th>within ±10 %</th>"
            "<th>statistic</th><th>stop</th></tr>")  # fmt: skip
    rows, verdicts = [], []
    for i, p in enumerate(validation.get("provinces", [])):
        stop = p.get("stop") or {}
        cells = "".join(_num(f"provinces.{i}.{k}", p.get(k)) for k in ("mapped_ha", "statistic_ha"))
        cells += _num(f"provinces.{i}.pcs", p.get("pcs"), _with_ci(p.get("pcs"), p.get("pcs_ci95")))
        cells += _num(f"provinces.{i}.within_10pct", p.get("within_10pct"))
        cells += f"<td>{html.escape(str(p.get('statistic_source') or '–'))}</td>"
        verdict = "stop" if stop.get("stop") else "continue"
        cells += _num(f"provinces.{i}.stop.stop", stop.get("stop"), verdict)
        rows.append(f"<tr><th>{html.escape(p['province'])}</th>{cells}</tr>")
        verdicts.append(_verdict(p, stop))
    pref_rows = []
    for i, p in enumerate(validation.get("prefectures", [])):
        cells = "".join(
            _num(f"prefectures.{i}.{k}", p.get(k)) for k in ("mapped_ha", "statistic_ha", "pcs", "within_10pct")
        )
        pref_rows.append(f"<tr><th>{html.escape(str(p.get('prefecture')))}</th>{cells}"
                         f"<td>{html.escape(str(p.get('comparison') or ''))}</td></tr>")  # fmt: skip
    pref = ""
    if pref_rows:
        pref = ("<details><summary>Prefectures</summary><table><tr><th>prefecture</th><th>mapped ha</th>"
                "<th>statistic ha</th><th>PCS</th><th>within ±10 %</th><th>compared with</th></tr>"
                f"{''.join(pref_rows)}</table></details>")  # fmt: skip
    return (f"<section><h2>3. Province level and the stop verdict</h2><table>{head}{''.join(rows)}</table>"
            f"{''.join(verdicts)}{pref}</section>")  # fmt: skip


def _croptype_section(run_dir: Path) -> str:
    """Crop areas per province and class (level 1 and the largest level-4 classes), mapped against the truth
    where the world gives it, and the area-weighted accuracy per level — from `mapper croptype map`."""
    import pandas as pd

    summary_path = run_dir / "croptype" / "summary.json"
    if not summary_path.is_file():
        return ""
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    areas = pd.read_csv(run_dir / "croptype" / "areas_provinces.csv")
    truth = areas["truth_ha"].notna().any()
    acc = summary.get("accuracy_by_area") or {}
    head = "<tr><th>province</th><th>level</th><th>class</th><th>mapped ha</th>" + (
        "<th>truth ha</th><th>mapped / truth</th></tr>" if truth else "</tr>")
    rows = []
    for (_, level), part in areas[areas["level"].isin([1, 4])].groupby(["unit_name", "level"], sort=False):
        shown = part.sort_values("mapped_ha", ascending=False).head(5 if level == 1 else 8)
        for r in shown.to_dict("records"):
            name, cls = html.escape(str(r["unit_name"])), html.escape(str(r["class"]))
            cells = [name, str(level), cls, _crop_cell(r["mapped_ha"])]
            if truth:
                cells += [_crop_cell(r["truth_ha"]), _crop_cell(r["ratio"], 2)]
            rows.append("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>")
    accuracy = ""
    if acc:
        accuracy = ("<p>Accuracy by area against the truth (pixels cropland in both): " + ", ".join(
            f"level {k[-1]} {v:.1%}" for k, v in acc.items() if v is not None) + ".</p>")  # fmt: skip
    lead = (f"<p>{summary.get('parcels', 0):,} fields of {summary.get('blocks', 0)} blocks classified "
            f"({summary.get('classified', 0):,} with a crop). Largest classes per province:</p>")  # fmt: skip
    return f"<section><h2>4. Crop types</h2>{lead}{accuracy}<table>{head}{''.join(rows)}</table></section>"


def _allocation_section(run_dir: Path) -> str:
    """Crop statistics on the grid (`mapper allocate RUN`): totals, what could not be placed, the fit against
    the world's truth per cell beside cropland-proportional allocation, and the largest crops per unit."""
    import pandas as pd

    summary_path = run_dir / "allocation" / "summary.json"
    if not summary_path.is_file():
        return ""
    s = json.loads(summary_path.read_text(encoding="utf-8"))
    units = pd.read_csv(run_dir / "allocation" / "units.csv")
    settings = s.get("settings", {})
    lead = (f"<p>{s['statistic_ha']:,.1f} ha of statistics ({s['units']} units, {len(s['crops'])} crops) onto "
            f"{s['pieces']:,} cells of the {html.escape(str(settings.get('grid')))} grid with probabilities from "
            f"the {html.escape(str(settings.get('probability')))}: {s['allocated_ha']:,.1f} ha placed, "
            f"{s['unplaced_ha']:,.1f} ha unplaced (no room or no probability).</p>")  # fmt: skip
    ev = s.get("evaluation")
    if ev:
        m, p = ev["method"], ev["cropland_proportional"]
        lead += (f"<p>Against the simulated world's truth per cell: R² {m['r2']:.3f}, MAE {m['mae_ha']:.2f} ha "
                 f"(proportional to cropland: R² {p['r2']:.3f}, MAE {p['mae_ha']:.2f} ha).</p>")  # fmt: skip
    head = ("<tr><th>unit</th><th>crop</th><th>rank</th><th>statistic ha</th><th>allocated ha</th>"
            "<th>unplaced ha</th><th>by eq. 5 / 6 ha</th></tr>")  # fmt: skip
    rows = []
    for _, part in units.groupby("unit_name", sort=True):
        for r in part.sort_values("statistic_ha", ascending=False).head(4).to_dict("records"):
            rows.append(f"<tr><td>{html.escape(str(r['unit_name']))}</td><td>{html.escape(str(r['crop']))}</td>"
                        f"<td>{r['rank']}</td>{_crop_cell(r['statistic_ha'])}{_crop_cell(r['allocated_ha'])}"
                        f"{_crop_cell(r['unplaced_ha'])}<td class=\"num\">{r['eq5_ha']:,.1f} / {r['eq6_ha']:,.1f}"
                        "</td></tr>")  # fmt: skip
    return (f"<section><h2>5. Crop statistics on the grid</h2>{lead}<p>The largest crops per unit:</p>"
            f"<table>{head}{''.join(rows)}</table></section>")  # fmt: skip


def _crop_cell(value, digits: int = 1) -> str:
    shown = "–" if value != value else f"{value:,.{digits}f}"  # NaN: no truth
    return f'<td class="num">{shown}</td>'


def _verdict(province: dict, stop: dict) -> str:
    criteria = stop.get("criteria", {})
    reasons = "; ".join(html.escape(c.get("reason", "")) for c in criteria.values())
    if stop.get("stop"):
        text = f"<b>{html.escape(province['province'])}: stop</b> — every criterion met ({reasons})."
        return f'<p class="ok">{text}</p>'
    failing = ", ".join(html.escape(str(f)) for f in stop.get("failing", []))
    text = f"<b>{html.escape(province['province'])}: another labelling round</b> — failing: {failing} ({reasons})."
    return f'<p class="warn">{text}</p>'


def _figure_section(figures: list[_Figure]) -> str:
    out = ["<section><h2>Figures</h2>"]
    for f in figures:
        paper = f' <span class="paper">(paper {html.escape(f.paper)})</span>' if f.paper else ""
        out.append(f"<figure><figcaption><b>{html.escape(f.title)}</b>{paper}. {html.escape(f.caption)}"
                   "</figcaption>")  # fmt: skip
        if f.png is not None:
            data = base64.b64encode(f.png).decode("ascii")
            out.append(f'<img alt="{html.escape(f.title)}" src="data:{f.mime};base64,{data}">')
        else:
            out.append(f'<p class="warn">Not drawn: {html.escape(f.problem or "")}</p>')
        out.append("</figure>")
    out.append("</section>")
    return "\n".join(out)


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{style}</style></head>
<body>
<p id="image-warning" class="warn" hidden></p>
{body}
<script>{script}</script>
</body></html>
"""

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0; } th, td { padding: .25em .7em; border-bottom: 1px solid #eee; }
th { text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { color: #555; font-weight: normal; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { margin-bottom: .4em; } .paper { color: #777; }
.warn { background: #fff3cd; padding: .4em .6em; } .ok { background: #e6f4ea; padding: .4em .6em; }
footer { color: #777; font-size: .85em; margin-top: 2em; }
"""

# Counts the figures the browser decoded; a figure that did not load gets a visible banner.
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images-total", String(imgs.length));
  document.body.setAttribute("data-images-loaded", String(ok));
  if (ok < imgs.length) {
    var w = document.getElementById("image-warning");
    w.textContent = (imgs.length - ok) + " of " + imgs.length + " figures did not load.";
    w.hidden = false;
  }
});
"""
