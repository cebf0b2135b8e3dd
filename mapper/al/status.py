"""What `mapper al status` prints: per round and province, the labels spent and the three numbers against
the stop thresholds, with the verdict; and the table the learning curves are drawn from."""

from __future__ import annotations


def _num(v, fmt=".3f") -> str:
    return "—" if v is None else format(v, fmt)


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
            "adopted": v.get("adopted"), "overall": v.get("overall", {}), "provinces": v.get("provinces", {}),
            "verdicts": v.get("verdicts", {}),
            "candidate_iou": v.get("candidate_numbers", {}).get("overall", {}).get("iou"),
        })  # fmt: skip
    return rows


def status_text(c, last_only: bool = False) -> str:
    rows = curve_rows(c.ledger)
    head = (f"campaign {c.identity['name']} ({c.layout.root}): {', '.join(c.identity['provinces'])}; strategy "
            f"{c.identity['strategy']}, {c.identity['round_blocks']} blocks a round; stop at IoU ≥ "
            f"{c.al.stop.iou}, semantic correctness ≥ {c.al.stop.semantic_correctness}, "
            f"PCS ≥ {c.al.stop.pcs}")  # fmt: skip
    lines = [] if last_only else [head]
    for row in rows[-1:] if last_only else rows:
        o = row["overall"]
        took = "" if row["round"] == 0 else ("  adopted" if row["adopted"] else
                                             f"  not adopted (candidate IoU {_num(row['candidate_iou'])})")  # fmt: skip
        lines.append(f"round {row['round']}: {row['blocks']} blocks labelled ({row['positive']} positive, "
                     f"{row['negative']} negative, {row['polygons']} polygons); validation IoU {_num(o.get('iou'))}, "
                     f"semantic correctness {_num(o.get('semantic_correctness'))}{took}")  # fmt: skip
        for name, p in row["provinces"].items():
            v = row["verdicts"].get(name, {})
            verdict = "stop" if v.get("stop") else "go on (" + ", ".join(v.get("failing", [])) + ")"
            waived = f"; PCS waived after {v['extra_rounds']} extra rounds" if v.get("waived") else ""
            numbers = (f"IoU {_num(p.get('iou'))}, semantic correctness {_num(p.get('semantic_correctness'))}, "
                       f"PCS {_num(p.get('pcs'))}")  # fmt: skip
            lines.append(f"  {name}: {numbers} -> {verdict}{waived}")
    pending = c.ledger.rounds[-1] if c.ledger.rounds and not c.ledger.rounds[-1].get("done") else None
    if pending is not None and not last_only:
        done = [s for s in pending["steps"]]
        lines.append(f"round {pending['round']} in progress: done {', '.join(done) or 'nothing yet'}")
    if not rows and not last_only:
        lines.append(f"nothing validated yet: run `mapper al loop {c.layout.root} --rounds 1`")
    return "\n".join(lines)
