"""What `mapper al status` prints: per round and province, the labels spent and the three numbers with their
95 % intervals against the stop thresholds (by the campaign's stop rule), with the verdict and a warning
where the validation sample is too small to decide; and the table the learning curves are drawn from."""

from __future__ import annotations

_RULE_WORDS = {"lower_bound": "rule lower_bound: the lower end of each 95 % interval must clear its threshold",
               "point": "rule point: the values must clear the thresholds"}  # fmt: skip


def _num(v, fmt=".3f") -> str:
    return "—" if v is None else format(v, fmt)


def _with_ci(numbers: dict, key: str) -> str:
    """A number with its interval, "0.912 (95 % CI 0.890-0.930)"; alone without one, "—" without a value."""
    ci = numbers.get(f"{key}_ci95")
    shown = _num(numbers.get(key))
    return f"{shown} (95 % CI {ci[0]:.3f}-{ci[1]:.3f})" if ci and numbers.get(key) is not None else shown


def curve_rows(ledger) -> list[dict]:
    """One row per validated round: labels spent so far and the numbers of the models in force."""
    rows, blocks, positive, negative, polygons = [], 0, 0, 0, 0
    for r in ledger.rounds:
        ingest = r["steps"].get("ingest", {})
        blocks += len(ingest.get("ingested", []))
        positive += len(ingest.get("positive", []))
        negative += len(ingest.get("negative", []))
        polygons += ingest.get("polygons_total", 0) or 0
        v = r["steps"].get("validate")
        if not v:
            continue
        rows.append({
            "round": r["round"], "blocks": blocks, "positive": positive, "negative": negative, "polygons": polygons,
            "adopted": v.get("adopted"), "overall": _headline(v.get("overall", {})),
            "provinces": {p: _headline(n) for p, n in v.get("provinces", {}).items()},
            "verdicts": v.get("verdicts", {}), "sample_warnings": v.get("sample_warnings", {}),
            "candidate_iou": v.get("candidate_numbers", {}).get("overall", {}).get("iou"),
        })  # fmt: skip
    return rows


def _headline(numbers: dict) -> dict:
    """Validation numbers without their blocks' parts (kept in the ledger for paired acceptance only)."""
    return {k: v for k, v in numbers.items() if k != "per_block"}


def status_text(c, last_only: bool = False) -> str:
    rows = curve_rows(c.ledger)
    unit = "chips" if c.identity.get("kind") == "chips" else "blocks"
    head = (f"campaign {c.identity['name']} ({c.layout.root}): {', '.join(c.identity['provinces'])}; strategy "
            f"{c.identity['strategy']}, {c.identity['round_blocks']} {unit} a round; stop at IoU ≥ "
            f"{c.al.stop.iou}, semantic correctness ≥ {c.al.stop.semantic_correctness}, "
            f"PCS ≥ {c.al.stop.pcs} ({_RULE_WORDS[c.al.stop_rule]})")  # fmt: skip
    lines = [] if last_only else [head]
    if not rows and not last_only:
        lines += [f"  warning: {w}" for w in c.identity.get("sample_warnings", [])]
    for row in rows[-1:] if last_only else rows:
        lines += _round_lines(row, unit)
    pending = c.ledger.rounds[-1] if c.ledger.rounds and not c.ledger.rounds[-1].get("done") else None
    if pending is not None and not last_only:
        done = [s for s in pending["steps"]]
        lines.append(f"round {pending['round']} in progress: done {', '.join(done) or 'nothing yet'}")
    if not rows and not last_only:
        lines.append(f"nothing validated yet: run `mapper al loop {c.layout.root} --rounds 1`")
    elif not last_only:
        current = c.ledger.current
        lines.append(f"segmentation in force: {current['models'].get('segmentation')} (from round {current['round']})")
    return "\n".join(lines)


def _round_lines(row: dict, unit: str = "blocks") -> list[str]:
    """A validated round: its labels and pooled numbers, then each province's numbers, verdict and warnings (a
    chip campaign's labels are chips, not polygons)."""
    o = row["overall"]
    drawn = "" if unit == "chips" else f", {row['polygons']} polygons"
    took = "" if row["round"] == 0 else ("  adopted" if row["adopted"] else
                                         f"  not adopted (candidate IoU {_num(row['candidate_iou'])})")  # fmt: skip
    lines = [f"round {row['round']}: {row['blocks']} {unit} labelled ({row['positive']} positive, "
             f"{row['negative']} negative{drawn}); validation IoU {_with_ci(o, 'iou')}, "
             f"semantic correctness {_with_ci(o, 'semantic_correctness')}{took}"]  # fmt: skip
    for name, p in row["provinces"].items():
        v = row["verdicts"].get(name, {})
        verdict = "stop" if v.get("stop") else "go on (" + ", ".join(v.get("failing", [])) + ")"
        waived = f"; PCS waived after {v['extra_rounds']} extra rounds" if v.get("waived") else ""
        numbers = (f"IoU {_with_ci(p, 'iou')}, semantic correctness {_with_ci(p, 'semantic_correctness')}, "
                   f"PCS {_with_ci(p, 'pcs')}")  # fmt: skip
        lines.append(f"  {name}: {numbers} -> {verdict}{waived}")
        lines += [f"    warning: {w}" for w in row.get("sample_warnings", {}).get(name, [])]
    return lines
