"""`mapper labels import chips`: a land-cover dataset's image/mask pairs -> labelled chips.

The work is in mapper.labels.import_chips; the class maps and presets in mapper.labels.chip_classes."""

from __future__ import annotations

from pathlib import Path

import click

from mapper.cli.labels import LabelUsageError


@click.command("chips", short_help="Image/mask pairs of a land-cover dataset -> labelled chips.")
@click.option("--images", "images_dir", required=True, type=click.Path(path_type=Path), help="Folder of images.")
@click.option(
    "--masks", "masks_dir", required=True, type=click.Path(path_type=Path),
    help="Folder of masks, each named like its image (may end in _mask/_label; may be the --images folder).",
)  # fmt: skip
@click.option("--gsd", help="Pixel size of the imagery in metres (required: declared, never guessed).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Labelled chips root.")
@click.option("--cropland-values", help="Mask values that are cropland: list or ranges, e.g. 4-6  [default: 1]")
@click.option("--not-values", help="Mask values that are not cropland, e.g. 0-3,7-14  [default: 0]")
@click.option("--ignore-values", help="Mask values to ignore (unlabelled)  [default: 255]")
@click.option(
    "--class-map", "class_map_file", type=click.Path(path_type=Path),
    help="CSV value,class[,name]: value a class index or #RRGGBB colour; class cropland, not or ignore.",
)  # fmt: skip
@click.option("--preset", help="A public dataset's class map: gid15, gid5, loveda, deepglobe, openearthmap.")
@click.option("--dataset", help="Dataset name recorded with each chip (a preset gives a default).")
@click.option("--id-prefix", default="", help="Put before every chip id (two datasets with the same file names).")
@click.option("--replace", is_flag=True, help="Replace chips of the same id that hold other content.")
def import_chips(images_dir, masks_dir, gsd, out, cropland_values, not_values, ignore_values, class_map_file,
                 preset, dataset, id_prefix, replace) -> None:  # fmt: skip
    """Import image/mask pairs as labelled chips under OUT/<chip_id>/.

    Each image (RGB PNG, JPEG or TIFF) is paired with the mask of the same name. Mask values map to cropland,
    not cropland or ignore by the value options (defaults 1 / 0 / 255), a --class-map CSV or a --preset; every
    value in a mask must be mapped. Everything is checked before anything is written. Importing again skips
    chips already there with the same content; a chip of the same id with other content is refused unless
    --replace."""
    from mapper.labels import chip_classes
    from mapper.labels.import_chips import import_chips as run_import
    from mapper.labels.store import LabelError

    value_options = (cropland_values, not_values, ignore_values)
    given = {"the value options": any(v is not None for v in value_options),
             "--class-map": class_map_file is not None, "--preset": preset is not None}  # fmt: skip
    ways = [w for w, yes in given.items() if yes]
    try:
        if len(ways) > 1:
            raise LabelError(f"give one of the value options, --class-map or --preset, not {' and '.join(ways)}")
        if preset is not None:
            chosen = chip_classes.preset(preset)
            class_map = chosen.class_map()
            dataset = dataset or chosen.dataset
            if gsd is None:
                raise LabelError(f"--gsd is missing: declare the imagery's pixel size in metres ({chosen.dataset} "
                                 f"documents {chosen.gsd_hint}; give what your copy has)")  # fmt: skip
        elif class_map_file is not None:
            class_map = chip_classes.from_csv(class_map_file)
        else:
            class_map = chip_classes.from_values(*value_options)
        summary = run_import(images_dir, masks_dir, out, gsd_m=gsd, class_map=class_map, dataset=dataset,
                             id_prefix=id_prefix, replace=replace)  # fmt: skip
    except LabelError as e:
        raise LabelUsageError(str(e)) from e
    empty = f", {len(summary.empty)} with no labelled pixel left out" if summary.empty else ""
    shown = ", ".join(summary.replaced[:5]) + ("…" if len(summary.replaced) > 5 else "")
    replaced = f", {len(summary.replaced)} replaced ({shown})" if summary.replaced else ""
    click.echo(
        f"{dataset or 'chips'}: {len(summary.written)} chips written, {len(summary.skipped)} already there"
        f"{replaced}{empty} -> {out}"
    )
