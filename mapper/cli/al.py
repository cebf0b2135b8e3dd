"""`mapper al`: active-learning label campaigns — select the blocks worth labelling, hand them to QGIS, take the
polygons back, retrain, validate, stop (per province)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mapper.cli.options import RegistryChoice, config_option, load, world_seed_option

# (mapper.al's errors — CampaignError, SelectionError, IngestError — print as one line: mapper.cli.errors)

CAMPAIGN = click.argument("campaign", type=click.Path(file_okay=False, path_type=Path))


def work_options(fn):
    """Where the campaign's runs and training go: in this process, a local Ray (default) or a cluster."""
    fn = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")(fn)
    fn = click.option("--in-process", is_flag=True, help="Run every stage in this process, without Ray.")(fn)
    fn = click.option("--address", help="A Ray cluster (host:port) for the runs and the training.")(fn)
    return config_option(fn)


@click.group("al", short_help="Label campaigns: select, export to QGIS, ingest, retrain, validate, stop.")
def al() -> None:
    """Active-learning label rounds (the CropLayer paper's way of making the models work on your imagery).

    A campaign directory holds a candidate pool, a fixed validation sample and a fixed decision sample, the
    labels, one folder per round and a ledger. Each round: select → export (a QGIS project) → label (you, or
    the simulated annotator on the simulated world) → ingest → train → validate; `mapper al loop` chains them
    until every province meets the stop criteria."""


@al.command("init")
@CAMPAIGN
@click.option("--province", "-p", "provinces", multiple=True, help="A province (repeatable; not with --pool-chips).")
@click.option("--pool-chips", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A pool of chips instead of blocks: labelled chips (masks hidden) or image files (with --gsd).")
@click.option("--validation-chips", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Labelled chips that judge each round (with --pool-chips; never selected).")
@click.option("--gsd", "gsd_m", type=float, help="Pixel size in metres of a --pool-chips folder of plain images.")
@click.option("--annotator", type=click.Choice(["person", "simulated"]), default="person", show_default=True,
              help="Who labels a chip pool: a person, or the pool's own masks revealed chip by chip (benchmarks).")
@click.option("--source", "-s", default="demo", show_default=True, help="The two imagery sources (a source set).")
@click.option("--pool", "pool_blocks", type=click.IntRange(min=1), help="Candidate pool: a spread sample of N blocks.")
@click.option("--pool-run", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Candidate pool: the finished blocks of this `mapper run` (its predictions serve round 1).")
@click.option("--validation", "validation_blocks", type=click.IntRange(min=1), help="Blocks of the validation sample.")
@click.option("--decision", "decision_blocks", type=click.IntRange(min=2), help="Blocks of the decision sample.")
@click.option("--validation-labels", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Labelled blocks: the validation sample (needed for imagery other than the world).")
@click.option("--decision-labels", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Labelled blocks: the decision sample (needed for imagery other than the world).")
@click.option("--strategy", type=RegistryChoice("mapper.al.strategies:strategy_names"),
              help="How each round's blocks are chosen (default: the config's, combined).")
@click.option("--round-blocks", type=click.IntRange(min=1), help="Blocks selected per round.")
@click.option("--seed", type=click.IntRange(min=0), help="Seed of the samples and of selection's random parts.")
@click.option("--segmentation", help="Starting segmentation checkpoint (default: the config's, seg-default).")
@click.option("--base-labels", multiple=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Labelled blocks the starting model learnt from; fine-tunes keep using them (repeatable).")
@click.option("--finetune-steps", type=click.IntRange(min=1), help="Steps of each round's fine-tune (recipe: 200).")
@click.option("--stop-iou", type=click.FloatRange(0, 1), help="Stop criterion on IoU (the paper's: 0.85).")
@click.option("--stop-rule", type=click.Choice(["lower_bound", "point"]),
              help="How a province meets the stop criteria: lower_bound (default), the lower end of each 95 % "
                   "interval; point, the values (the paper's).")  # fmt: skip
@config_option
@world_seed_option
def init(campaign, provinces, pool_chips, validation_chips, gsd_m, annotator, source, pool_blocks, pool_run,
         validation_blocks, decision_blocks, validation_labels, decision_labels, strategy, round_blocks, seed,
         segmentation, base_labels, finetune_steps, stop_iou, stop_rule, config_files, world_seed):  # fmt: skip
    """Create a campaign. Example: mapper al init camp --province Guangdong --pool 12 --validation 6 --decision 6

    Over chips of your own imagery instead of blocks: mapper al init camp --pool-chips CHIPS --validation-chips
    LABELLED (each round exports chips to label and takes labelled chips back).

    A province with fewer than 16 validation blocks is warned about: its decisions rest on wide intervals."""
    from mapper.al.setup import init_campaign, init_chip_campaign

    overrides = {"al.pool_blocks": pool_blocks, "al.validation_blocks": validation_blocks,
                 "al.decision_blocks": decision_blocks, "al.strategy": strategy, "al.round_blocks": round_blocks,
                 "al.seed": seed, "run.models.segmentation": segmentation, "al.finetune_steps": finetune_steps,
                 "al.stop.iou": stop_iou, "al.stop_rule": stop_rule,
                 "al.base_labels": [str(p.resolve()) for p in base_labels] or None}  # fmt: skip
    config = load(config_files, world_seed, {k: v for k, v in overrides.items() if v is not None})
    if pool_chips is not None or validation_chips is not None:
        if pool_chips is None or validation_chips is None or provinces:
            raise click.UsageError("a chip campaign takes --pool-chips and --validation-chips, and no --province")
        layout = init_chip_campaign(campaign, config, pool_chips, validation_chips, gsd_m=gsd_m, annotator=annotator)
        click.echo(f"campaign {layout.root} over chips: next `mapper al loop {layout.root} --rounds N`"
                   + ("" if annotator == "simulated" else " (each round waits for labelled chips; see its README.txt)"))
        return
    if not provinces:
        raise click.UsageError("give --province (repeatable), or --pool-chips and --validation-chips")
    layout = init_campaign(campaign, config, provinces, source, pool_run=pool_run,
                           validation_labels=validation_labels, decision_labels=decision_labels)  # fmt: skip
    click.echo(f"campaign {layout.root}: next `mapper al loop {layout.root} --until-stop` (simulated world) or "
               f"`mapper al export {layout.root}` (a person labels in QGIS)")  # fmt: skip


def _open(campaign: Path, in_process: bool, address: str | None, quiet: bool, config_files):
    from mapper.al.setup import open_campaign
    from mapper.cli.run import _executor_factory

    trainer = None
    if address and not in_process:
        from mapper.pipelines.campaigns import cluster_trainer

        trainer = cluster_trainer(address)
    return open_campaign(campaign, _executor_factory(in_process, address, False), trainer, quiet, config_files)


def _step(campaign, until, in_process, address, quiet, config_files, returned=None) -> dict:
    from mapper.al.rounds import advance, all_stopped
    from mapper.store.atomic import remove_stale_temporary_files_under
    from mapper.store.run_lock import RunLock

    c = _open(campaign, in_process, address, quiet, config_files)
    with RunLock.acquire(c.layout.root, what=f"mapper al {until}"):
        # what a killed command's writes left; each run under runs/ cleans its own when it is resumed
        remove_stale_temporary_files_under(c.layout.root, skip=("runs",))
        if not c.ledger.rounds or not c.ledger.rounds[0].get("done"):
            entry = advance(c)  # round 0: the starting models judged on the validation sample
            if all_stopped(c.ledger, c.identity["provinces"]):
                return entry
        return advance(c, until, returned)


def _echo_step(entry: dict, step: str) -> None:
    result = entry["steps"].get(step, {})
    click.echo(f"round {entry['round']}: {step} done: " + json.dumps(_short(result), default=str)[:600])


def _short(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("candidate_numbers", "verdicts", "written", "at")}


for _name, _until, _doc in (
    ("select", "select", "Predict the pool with the models in force and select the round's blocks."),
    ("export", "export", "Write the round's QGIS folder (images, labels.gpkg, round.qgz, README) for a labeller."),
    ("simulate", "label", "Simulated world: the simulated annotator returns the round's GeoPackage."),
    ("train", "train", "Fine-tune the segmentation on all labels and retrain the decision models."),
    ("validate", "validate", "Judge the candidate models on the validation sample; adopt them if not worse."),
):

    def _make(until=_until, name=_name, doc=_doc):
        @al.command(name, help=doc + " (Earlier steps of the round are done first when needed.)")
        @CAMPAIGN
        @work_options
        def command(campaign, address, in_process, quiet, config_files):
            entry = _step(campaign, until, in_process, address, quiet, config_files)
            _echo_step(entry, until)

        return command

    _make()


@al.command("ingest")
@CAMPAIGN
@click.option("--returned", type=click.Path(exists=True, path_type=Path),
              help="The returned GeoPackage (default: the round folder's labels.gpkg, edited in place); for a chip "
                   "campaign a folder of labelled chips (default: the round's returned/).")  # fmt: skip
@work_options
def ingest(campaign, returned, address, in_process, quiet, config_files):
    """Take the labeller's polygons back: each block done/negative becomes a labelled block; todo ones wait."""
    entry = _step(campaign, "ingest", in_process, address, quiet, config_files, returned)
    result = entry["steps"]["ingest"]
    click.echo(f"round {entry['round']}: {len(result['ingested'])} block(s) ingested ({len(result['positive'])} "
               f"positive, {len(result['negative'])} negative), {len(result['todo'])} todo, "
               f"{len(result['skipped'])} skipped")  # fmt: skip


@al.command("loop")
@CAMPAIGN
@click.option("--until-stop", is_flag=True, help="Go on until every province meets the stop criteria.")
@click.option("--rounds", "max_rounds", type=click.IntRange(min=1), help="At most this many rounds now.")
@work_options
def loop(campaign, until_stop, max_rounds, address, in_process, quiet, config_files):
    """Chain whole rounds (select → export → simulate → ingest → train → validate)."""
    from mapper.al.status import status_text

    if not until_stop and not max_rounds:
        raise click.UsageError("give --until-stop or --rounds N")
    from mapper.al.rounds import all_stopped

    rounds_now = 0
    while True:
        c = _open(campaign, True, None, quiet, config_files)
        open_round = bool(c.ledger.rounds) and not c.ledger.rounds[-1]["done"]
        if all_stopped(c.ledger, c.identity["provinces"]) and not open_round:
            click.echo("every province meets the stop criteria: the campaign is done")
            break
        entry = _step(campaign, "validate", in_process, address, quiet, config_files)
        c = _open(campaign, True, None, quiet, config_files)
        rounds_now += 1 if entry["round"] else 0
        click.echo(status_text(c, last_only=True))
        if max_rounds and rounds_now >= max_rounds:
            break
        if entry["round"] >= c.al.max_rounds:
            click.echo(f"al.max_rounds = {c.al.max_rounds} rounds done; stopping (raise it to go on)")
            break
    click.echo(status_text(c))


@al.command("status")
@CAMPAIGN
@click.option("--json", "as_json", is_flag=True, help="The ledger as JSON.")
def status(campaign, as_json):
    """Per round and province: labels spent, IoU, semantic correctness and PCS against the thresholds."""
    from mapper.al.setup import open_campaign
    from mapper.al.status import status_text

    c = open_campaign(campaign, None)
    click.echo(json.dumps(c.ledger.data, indent=1, default=str) if as_json else status_text(c))


@al.command("report")
@CAMPAIGN
@click.argument("others", nargs=-1, type=click.Path(file_okay=False, exists=True, path_type=Path))
def report(campaign, others):
    """Learning curves (PNG) and the campaign page (HTML, with the selected blocks on a map); other campaigns
    given after it are drawn on the same curves (e.g. `random` against `combined`)."""
    from mapper.al.page import write_campaign_report

    out = write_campaign_report(campaign, others)
    click.echo(f"wrote {out}")
