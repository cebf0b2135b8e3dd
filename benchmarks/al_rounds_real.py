"""Label rounds on real imagery (issue 24, part 4, real): chip campaigns over the gid15 training chips with their
masks hidden, judged on the held-out gid15 test chips, through the real commands and files.

    python -m benchmarks.real_seg prepare --out /tmp/real            # the gid15 splits (once)
    python -m benchmarks.al_rounds_real --gid /tmp/real/gid15 --record              # 3 strategies x 3 seeds

Per strategy and al.seed a campaign (`mapper al init --pool-chips TRAIN --validation-chips VAL --annotator
simulated`): the pool is the 532 gid15 training chips (copied without their masks; the simulated annotator
writes a selected chip's labelled chip from its own mask, the files a person returns), the campaign's
validation sample (acceptance and stop) the 76 validation chips, each round `--round-chips` chips and a
fine-tune of `--finetune-steps` steps from the model in force on every chip labelled so far (no world labels:
the models are judged on real chips only). The start is the packaged seg-default, trained on the simulated
world only. After each round the models in force are judged on the 153 held-out test chips (never selected,
never validated on): pixel IoU with its chip-bootstrap interval. Campaigns resume where they stood. Beside the
curves, the reference of labelling everything: the start fine-tuned on every pool chip with its mask for as
many steps as a campaign's fine-tunes add up to, what the whole pool buys at the same training budget
(`--no-all-labels` skips it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time
from pathlib import Path

from benchmarks.al_rounds import _auc, mapper
from benchmarks.common import median

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "al_rounds_real"
LEVELS = (0.2, 0.3, 0.4, 0.75)  # 0.75: the real target


def campaign(args, strategy: str, seed: int) -> Path:
    camp = args.work / f"{strategy}-s{seed}"
    if not (camp / "campaign.json").exists():
        mapper("al", "init", str(camp), "--pool-chips", str(args.gid / "train"), "--validation-chips",
               str(args.gid / "val"), "--annotator", "simulated", "--strategy", strategy, "--seed", str(seed),
               "--round-blocks", str(args.round_chips), "--finetune-steps", str(args.finetune_steps),
               "--segmentation", args.start)  # fmt: skip
    done = sum(1 for r in _ledger(camp)["rounds"] if r["round"] and r.get("done"))
    if done < args.rounds:
        mapper("al", "loop", str(camp), "--rounds", str(args.rounds - done), "--in-process", "-q")
    return camp


def _ledger(camp: Path) -> dict:
    return json.loads((camp / "ledger.json").read_text())


def in_force_by_round(ledger: dict) -> list[tuple[int, int, str]]:
    """(round, chips labelled so far, segmentation in force after it) of each validated round."""
    out, chips, models = [], 0, None
    for r in ledger["rounds"]:
        chips += len(r["steps"].get("ingest", {}).get("ingested", []))
        v = r["steps"].get("validate")
        if not v:
            continue
        if r["round"] == 0 or v.get("adopted"):
            models = v["candidate"]["segmentation"]
        out.append((r["round"], chips, models))
    return out


def judge(model: str, test: Path, cache: Path) -> dict:
    """chip_numbers of the model on the test chips (cached by the model's path and weights' time)."""
    from mapper.al.chip_rounds import chip_numbers
    from mapper.seg.predict import load_segmenter

    key = model.replace("/", "_")
    path = cache / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    numbers = chip_numbers(load_segmenter(model), test)
    numbers["seconds"] = round(time.perf_counter() - t0, 1)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(numbers, indent=1) + "\n")
    return numbers


def all_labels(args, start: str) -> dict:
    """The reference of labelling everything: the start fine-tuned, as a campaign's rounds are, on *every* pool
    chip with its mask, for as many steps as a campaign's fine-tunes add up to (rounds × steps), judged on the
    test chips."""
    from mapper.al.chip_rounds import MAPPING_GSD_M
    from mapper.al.rounds import fine_tune
    from mapper.config.models import AlConfig

    steps = args.rounds * args.finetune_steps
    out = args.work / f"all-labels-{steps}"
    al = AlConfig(finetune_steps=steps)
    result = fine_tune(start, [args.gid / "train"], out, al, 0, MAPPING_GSD_M)
    numbers = judge(str(out), args.gid / "test", args.work / "judged")
    return {"chips": len([d for d in (args.gid / "train").iterdir() if d.is_dir()]), "steps": steps,
            "seconds": result.get("seconds"), "iou": numbers["iou"], "ci95": numbers["iou_ci95"]}  # fmt: skip


def summarise(camp: Path, test: Path, cache: Path) -> dict:
    ledger = _ledger(camp)
    curve = [(k, chips, judge(model, test, cache)) for k, chips, model in in_force_by_round(ledger)]
    points = [(chips, n["iou"]) for _, chips, n in curve]
    rounds = [r for r in ledger["rounds"] if r["round"] and r.get("done")]
    return {
        "campaign": camp.name, "curve": [{"round": k, "chips": chips, "iou": n["iou"], "ci95": n["iou_ci95"],
                                          "semantic": n["semantic_correctness"], "pcs": n["pcs"]}
                                         for k, chips, n in curve],
        "reach": {str(level): next((c for c, iou in points if iou is not None and iou >= level), None)
                  for level in LEVELS},
        "auc": _auc(points),
        "adopted": sum(1 for r in rounds if r["steps"].get("validate", {}).get("adopted")),
        "round_seconds": [sum(s.get("seconds", 0) for s in r["steps"].values()) for r in rounds],
        "train_seconds": [r["steps"]["train"].get("seconds") for r in rounds if r["steps"].get("train")],
        "pool_seconds": [r["steps"]["pool"].get("seconds") for r in rounds if not r["steps"]["pool"].get("reused")],
        "positive": sum(len(r["steps"].get("ingest", {}).get("positive", [])) for r in rounds),
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ reporting
def by_strategy(results: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in results:
        out.setdefault(r["campaign"].rsplit("-s", 1)[0], []).append(r)
    return out


def plot(results: list[dict], out_png: Path, top: dict | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for (strategy, runs), colour in zip(by_strategy(results).items(), ("tab:grey", "tab:blue", "tab:red"),
                                        strict=False):  # fmt: skip
        n = min(len(r["curve"]) for r in runs)
        chips = [runs[0]["curve"][i]["chips"] for i in range(n)]
        iou = np.array([[r["curve"][i]["iou"] or 0.0 for i in range(n)] for r in runs])
        ax.plot(chips, np.median(iou, axis=0), "-o", color=colour, label=f"{strategy} (median of {len(runs)})")
        ax.fill_between(chips, iou.min(axis=0), iou.max(axis=0), color=colour, alpha=0.15)
    if top:
        ax.axhline(top["iou"], color="black", ls="--", lw=1,
                   label=f"every pool chip labelled ({top['chips']}), {top['steps']} steps")  # fmt: skip
    ax.set_xlabel("real chips labelled")
    ax.set_ylabel("pixel IoU, held-out gid15 test chips")
    ax.set_title("Label rounds on real chips (gid15): models in force, seed range shaded")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


def _reach(runs: list[dict], level: float) -> float:
    """Median chips to reach `level` over the seeds, a seed that never reached it counting as infinitely many
    (inf: most seeds did not reach it)."""
    return median([math.inf if r["reach"][str(level)] is None else r["reach"][str(level)] for r in runs])


def reach_text(runs: list[dict]) -> str:
    parts = []
    for level in LEVELS:
        hits = [r["reach"][str(level)] for r in runs]
        got = [h for h in hits if h is not None]
        shown = f"{median(got):g}" if got else "—"
        parts.append(f"{level}: {shown} ({len(got)}/{len(hits)} seeds)")
    return ", ".join(parts)


def saving_text(runs: list[dict], baseline: list[dict]) -> str:
    parts = []
    for level in LEVELS:
        mine, theirs = _reach(runs, level), _reach(baseline, level)
        if math.isinf(mine) and math.isinf(theirs):
            parts.append(f"{level}: neither (most seeds did not reach it)")
        elif math.isinf(theirs):
            parts.append(f"{level}: {mine:g} chips vs random not reaching it in most seeds")
        elif math.isinf(mine):
            parts.append(f"{level}: not reached in most seeds vs random's {theirs:g} chips")
        elif theirs == 0:
            parts.append(f"{level}: both at the start")
        else:
            saved = 100 * (1 - mine / theirs)
            parts.append(f"{level}: {mine:g} vs {theirs:g} chips ("
                         + (f"{saved:.0f} % fewer)" if saved >= 0 else f"{-saved:.0f} % more)"))
    return "; ".join(parts)


def markdown(args, results: list[dict], figure: Path, top: dict | None = None) -> str:
    import platform
    import sys

    from benchmarks.run import load_average, machine_info

    m = machine_info()
    lines = [f"## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — label rounds on real chips (`python -m "
             f"benchmarks.al_rounds_real {' '.join(sys.argv[1:])}`) — {m['cpu']}, {m['cores']} cores, {m['ram']}; "
             f"load average after: {load_average()}", "",
             f"Pool: the 532 gid15 training chips (masks hidden; the simulated annotator returns a selected chip's "
             f"own mask as a labelled chip); campaign validation: the 76 gid15 validation chips; judge: the 153 "
             f"held-out test chips. Start: seg-default (simulated world only). {args.round_chips} chips a round, "
             f"{args.rounds} rounds, fine-tunes of {args.finetune_steps} steps from the model in force on the "
             f"chips labelled so far (no world labels); seeds {args.seeds}. Python {platform.python_version()}.",
             "", "| campaign | test IoU by chips labelled (models in force) | chips to IoU " +
             " / ".join(str(x) for x in LEVELS) + " | AUC | adopted | positive chips |", "|---|---|---|---|---|---|"]
    for r in results:
        curve = ", ".join(f"{c['chips']}: {c['iou']:.3f}" for c in r["curve"])
        reach = " / ".join("—" if v is None else str(v) for v in r["reach"].values())
        lines.append(f"| {r['campaign']} | {curve} | {reach} | {r['auc']:.3f} | {r['adopted']} | {r['positive']} |")
    lines.append("")
    groups = by_strategy(results)
    for strategy, runs in groups.items():
        aucs = sorted(r["auc"] for r in runs)
        rounds = [s for r in runs for s in r["round_seconds"]]
        final = sorted(r["curve"][-1]["iou"] for r in runs)
        lines.append(f"- {strategy}: AUC median {median(aucs):.3f} (range {aucs[0]:.3f}-{aucs[-1]:.3f}, "
                     f"{len(runs)} seeds); last test IoU median {median(final):.3f} (range {final[0]:.3f}-"
                     f"{final[-1]:.3f}); chips to reach IoU {reach_text(runs)}; a round median "
                     f"{median(rounds) / 60:.1f} min on this machine")  # fmt: skip
    if "random" in groups:
        for strategy in (s for s in groups if s != "random"):
            lines.append(f"- {strategy} against random, chips to reach each test IoU (median over seeds; a seed "
                         f"that never reached it counts as infinitely many): "
                         f"{saving_text(groups[strategy], groups['random'])}")  # fmt: skip
    if top:
        ci = top["ci95"] or [math.nan, math.nan]
        lines.append(f"- Every pool chip labelled, at the same training budget: the start fine-tuned on all "
                     f"{top['chips']} pool chips with their masks, {top['steps']} steps (a campaign's fine-tunes "
                     f"together), test IoU "
                     f"{top['iou']:.3f} (95 % CI {ci[0]:.3f}-{ci[1]:.3f}; {top['seconds']} s)")  # fmt: skip
    lines += [f"- Curves: `{figure.relative_to(HERE.parent)}`.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gid", type=Path, default=Path("/tmp/real/gid15"), help="`benchmarks.real_seg prepare`'s gid15")
    p.add_argument("--strategies", default="random,uncertainty,combined")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--round-chips", type=int, default=10)
    p.add_argument("--finetune-steps", type=int, default=60)
    p.add_argument("--start", default="seg-default")
    p.add_argument("--work", type=Path, default=WORK)
    p.add_argument("--only-run", action="store_true", help="Run the campaigns; judge and report nothing.")
    p.add_argument("--no-all-labels", action="store_true", help="Skip the every-pool-chip reference fine-tune.")
    p.add_argument("--record", action="store_true", help="Append the results to benchmarks/RESULTS.md.")
    args = p.parse_args(argv)
    for split in ("train", "val", "test"):
        if not (args.gid / split).is_dir():
            raise SystemExit(f"{args.gid / split} is missing: run `python -m benchmarks.real_seg prepare --out DIR`")
    seeds = [int(s) for s in args.seeds.split(",")]
    camps = [campaign(args, s, seed) for seed in seeds for s in args.strategies.split(",")]
    if args.only_run:
        return 0
    results = [summarise(c, args.gid / "test", args.work / "judged") for c in camps]
    start = _ledger(camps[0])["rounds"][0]["steps"]["validate"]["candidate"]["segmentation"]
    top = None if args.no_all_labels else all_labels(args, start)
    (args.work / "results.json").write_text(json.dumps({"campaigns": results, "all_labels": top}, indent=1) + "\n")
    figure = plot(results, HERE / "al_rounds_real_curves.png", top)
    text = markdown(args, results, figure, top)
    print(text)
    if args.record:
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
