"""The short readable summary `mapper validate` prints of a validation report (without --json); each
headline number is shown with its 95 % interval when it has one ("0.912 (95 % CI 0.890-0.930)")."""

from __future__ import annotations


def _num(v, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def _ci(ci) -> str:
    """An interval as "0.890-0.930", or "-" without one."""
    return "-" if not ci else f"{ci[0]:.3f}-{ci[1]:.3f}"


def format_text(report: dict) -> str:
    """A short readable summary of a validation report."""
    run = report["run"]
    lines = [
        f"Validation of {run['dir']}: {run['region']}, sources {', '.join(run['sources'])}, "
        f"{run['blocks_done']} of {run['blocks_planned']} blocks mapped"
    ]
    lines += _pixel_lines(report["pixel_iou"])
    lines += _semantic_lines(report["semantic_correctness"])
    lines += _province_lines(report["provinces"], report["prefectures"])
    lines += _stop_lines(report)
    if not report["complete"]:
        lines += _missing_lines(report["missing"], run["dir"])
    if report.get("written"):
        lines += ["", f"written: {report['written']}"]
    elif report.get("write_error"):
        lines += ["", f"not written: {report['write_error']}"]
    return "\n".join(lines)


def _pixel_lines(px: dict) -> list[str]:
    lines = [""]
    if px["truth"] is None:
        lines.append(f"Pixel level: {px['note']}")
    else:
        lines.append(
            f"Pixel level (truth: {px['truth']}, {px['blocks']} block(s); no-imagery pixels count as not cropland)"
        )
        lines.append(f"  {'map':<14}{'IoU':>7}{'95 % CI':>14}{'precision':>11}{'recall':>8}{'blocks':>8}")
        for name in px["maps"]:
            m = px[name]
            lines.append(
                f"  {name:<14}{_num(m['iou']):>7}{_ci(m.get('ci95')):>14}{_num(m['precision']):>11}"
                f"{_num(m['recall']):>8}{m['blocks']:>8}"
            )
    labels = px.get("labels")
    if labels:
        lines.append(
            f"  labels: {labels['used']} used, {labels['outside_run']} outside the run (ignored), "
            f"{len(labels['not_mapped'])} of blocks not mapped, {len(labels['refused'])} refused"
        )
        for r in labels["refused"][:10]:
            lines.append(f"  refused {r['block_id']}: {r['reason'].splitlines()[0]}")
    return lines


def _semantic_lines(sc: dict) -> list[str]:
    lines = ["", f"Block level: semantic correctness (share of blocks TP or TN; from the {sc['from']})"]
    lines.append(f"  {'map':<14}{'rate':>7}{'95 % CI':>14}{'n':>6}   classes")
    for name in sc["maps"]:
        e = sc[name]
        classes = " ".join(f"{k} {v}" for k, v in e["classes"].items() if v)
        extra = f"   (model: {_num(e['model_rate'])})" if e.get("model_rate") is not None else ""
        lines.append(f"  {name:<14}{_num(e['rate']):>7}{_ci(e.get('ci95')):>14}{e['n']:>6}   {classes}{extra}")
    return lines


def _province_lines(provinces: list[dict], prefectures: list[dict]) -> list[str]:
    lines = ["", "Province level: mapped cropland against the reference (PCS = mapped / reference)"]
    for p in provinces:
        mapped = "-" if p["mapped_ha"] is None else f"{p['mapped_ha']:,.0f} ha"
        if p.get("ci95"):
            mapped += f" (95 % CI {p['ci95'][0]:,.0f}-{p['ci95'][1]:,.0f})"
        ref = "-" if p["statistic_ha"] is None else f"{p['statistic_ha']:,.0f} ha ({p['statistic_source']})"
        verdict = {True: "within ±10 %", False: "outside ±10 %", None: ""}[p["within_10pct"]]
        pcs = _num(p["pcs"]) + (f" (95 % CI {_ci(p['pcs_ci95'])})" if p.get("pcs_ci95") else "")
        lines.append(
            f"  {p['province']}: {p['comparison']}: mapped {mapped}; reference {ref}; PCS {pcs} {verdict}".rstrip()
        )
        if p.get("iou_ci95") or p.get("semantic_correctness_ci95"):
            lines.append(
                f"    final map over its blocks: IoU {_num(p.get('iou'))} (95 % CI {_ci(p.get('iou_ci95'))}), "
                f"semantic correctness {_num(p.get('semantic_correctness'))} "
                f"(95 % CI {_ci(p.get('semantic_correctness_ci95'))})"
            )
        if p.get("note"):
            lines.append(f"    {p['note']}")
        pe = p.get("province_estimate")
        if pe and pe.get("ci95"):
            lines.append(
                f"    whole province estimated {pe['estimate_ha']:,.0f} ha (95 % CI {pe['ci95'][0]:,.0f}-"
                f"{pe['ci95'][1]:,.0f})"
                + (f", statistic {pe['statistic_ha']:,.0f} ha" if pe.get("statistic_ha") else "")
            )
    if prefectures:
        shown = prefectures[:12]
        lines.append(
            "  prefectures: "
            + "; ".join(f"{p['prefecture']} PCS {_num(p['pcs'])}" for p in shown)
            + (f"; … {len(prefectures) - 12} more" if len(prefectures) > 12 else "")
        )
    return lines


def _stop_lines(report: dict) -> list[str]:
    t = report["thresholds"]
    rule = report.get("stop_rule", "point")
    on = "the lower end of each 95 % interval" if rule == "lower_bound" else "the values"
    lines = [
        "",
        f"Stop (IoU ≥ {t['iou']}, semantic correctness ≥ {t['semantic_correctness']}, PCS ≥ {t['pcs']}; "
        f"rule {rule}: {on}; extra rounds {report['extra_rounds']})",
    ]
    for p in report["provinces"]:
        s = p["stop"]
        if s["stop"]:
            waived = f" (waived: {', '.join(s['waived'])})" if s["waived"] else ""
            lines.append(f"  {p['province']}: stop{waived}")
        else:
            reasons = "; ".join(s["criteria"][n]["reason"] for n in s["failing"])
            lines.append(f"  {p['province']}: continue, failing {', '.join(s['failing'])}: {reasons}")
    return lines


def _missing_lines(missing: dict, run_dir: str) -> list[str]:
    lines = ["", "Missing (validated what exists):"]
    if missing["blocks_pending"]:
        ids = missing["blocks_pending"]
        lines.append(f"  {len(ids)} block(s) pending: {', '.join(ids[:10])}{' …' if len(ids) > 10 else ''}")
    if missing["blocks_failed"]:
        lines.append(
            f"  {len(missing['blocks_failed'])} block(s) failed, e.g. "
            + ", ".join(f"{f['block_id']} ({f['stage']})" for f in missing["blocks_failed"][:5])
        )
    for f in missing["files"][:10]:
        lines.append(f"  {f}")
    if missing["blocks_pending"] or missing["blocks_failed"]:
        lines.append(f"  finish the run with `mapper run --resume {run_dir}`")
    return lines
