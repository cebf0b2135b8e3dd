"""`mapper export stac` (issue 27): the catalog validates with stac-validator offline against local schema copies
(tests/data/stac_schemas), holds an item per done block whose hrefs resolve, relative or published, with the
GeoTIFFs' own projection and the grid's footprint, keeps tokens out, and names what it leaves out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from mapper.cli import cli

SCHEMAS = Path(__file__).parent / "data" / "stac_schemas"
SCHEMA_CONFIG = SCHEMAS / "schema-config.yaml"  # each schema URL -> its local copy, for stac-validator
BASE = "https://example.org/runs/gd/"


@pytest.fixture
def offline(monkeypatch):
    """stac-validator may not reach the network: a schema without a local copy fails, naming its URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the package points to its successor on import
        import stac_validator.utilities as utilities

    def refuse(url, *args, **kwargs):
        raise AssertionError(f"stac-validator tried the network for {url}: add its schema to {SCHEMAS}")

    monkeypatch.setattr(utilities.requests, "get", refuse)


def stac_validate(path: Path, recursive: bool = True) -> tuple[bool, list[dict]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from stac_validator.validate import StacValidate

    validator = StacValidate(str(path), recursive=recursive, schema_config=str(SCHEMA_CONFIG))
    return validator.run(), validator.message


def export(*args) -> object:
    return CliRunner().invoke(cli, ["export", "stac", *map(str, args)])


def items_of(catalog: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in catalog.glob("*/*.json")}


def block_ids(run: Path) -> list[str]:
    return sorted(p.stem for p in (run / "final").glob("*.tif"))


@pytest.fixture(scope="module")
def run_copy(world_run, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("stac") / "run"
    shutil.copytree(world_run, run)
    return run


@pytest.fixture(scope="module")
def catalog(run_copy) -> Path:
    result = export(run_copy)
    assert result.exit_code == 0, result.output
    assert "1 item(s) of 1 planned block(s)" in result.stdout
    return run_copy / "stac"


def test_the_catalog_validates_offline(catalog, offline):
    valid, messages = stac_validate(catalog / "collection.json")
    assert valid, messages
    checked = {m["asset_type"]: m["schema"] for m in messages}
    assert set(checked) == {"COLLECTION", "ITEM"}
    for schemas in checked.values():  # the core schema and both extensions, all from the local copies
        assert len(schemas) == 3 and not any("://" in s for s in schemas), schemas


def test_the_schema_config_maps_every_local_copy_to_its_url():
    import yaml

    mapping = yaml.safe_load(SCHEMA_CONFIG.read_text())["schemas"]
    copies = {p.relative_to(SCHEMAS).as_posix() for p in SCHEMAS.rglob("*.json")}
    assert set(mapping.values()) == copies
    assert all(url == "https://" + path for url, path in mapping.items())


@pytest.mark.parametrize("target, breakage, schema", [
    ("item", lambda d: d["properties"].pop("datetime"), "item-spec"),
    ("item", lambda d: d.pop("bbox"), "item-spec"),
    ("item", lambda d: d["assets"]["cropland"]["raster:bands"][0].update(data_type="uint7"), "raster/v1.1.0"),
    ("item", lambda d: d["properties"].update({"proj:shape": "2518x2331"}), "projection/v2.0.0"),
    ("collection", lambda d: d.pop("extent"), "collection-spec"),
])  # fmt: skip
def test_the_validation_catches_a_broken_catalog(catalog, tmp_path, offline, target, breakage, schema):
    broken = tmp_path / "stac"
    shutil.copytree(catalog, broken)
    path = next(broken.glob("*/*.json")) if target == "item" else broken / "collection.json"
    data = json.loads(path.read_text())
    breakage(data)
    path.write_text(json.dumps(data))
    valid, messages = stac_validate(broken / "collection.json")
    assert not valid
    errors = [m for m in messages if not m["valid_stac"]]
    assert [m["error_type"] for m in errors] == ["JSONSchemaValidationError"], messages  # the schema, not the network
    assert schema in errors[0]["failed_schema"], errors


def test_one_item_per_done_block_whose_hrefs_resolve_after_a_move(catalog, run_copy, tmp_path):
    assert sorted(items_of(catalog)) == block_ids(run_copy)
    moved = tmp_path / "elsewhere"
    shutil.copytree(run_copy, moved)  # a self-contained catalog works wherever the run directory goes
    collection = json.loads((moved / "stac" / "collection.json").read_text())
    hrefs = [(moved / "stac", a["href"]) for a in collection["assets"].values()]
    for item_file in (moved / "stac").glob("*/*.json"):
        item = json.loads(item_file.read_text())
        hrefs += [(item_file.parent, a["href"]) for a in item["assets"].values()]
        assert {"cropland", "mask_demo-a", "mask_demo-b", "mosaic_demo-a", "polygons"} <= set(item["assets"])
    for folder, href in hrefs:
        assert not href.startswith(("/", "http")), href
        target = (folder / href).resolve()
        assert target.is_file() and target.is_relative_to(moved.resolve()), href
    assert {"blocks", "map_cropland", "area", "summary", "run", "config"} <= set(collection["assets"])
    assert not any("state.sqlite" in h or "run.log" in h for _, h in hrefs)


def test_projection_from_the_header_and_bbox_from_tile_math(catalog, run_copy):
    import mercantile
    import rasterio

    from mapper.grid.blocks import Block

    for block_id, item in items_of(catalog).items():
        props = item["properties"]
        with rasterio.open(run_copy / "final" / f"{block_id}.tif") as src:
            assert props["proj:transform"] == list(src.transform)[:6]
            assert props["proj:shape"] == [src.height, src.width]
            a, _, c, _, e, f = src.transform[:6]
            west, north = mercantile.lnglat(c, f)
            east, south = mercantile.lnglat(c + a * src.width, f + e * src.height)
        assert props["proj:code"] == "EPSG:3857"
        assert item["bbox"] == pytest.approx([west, south, east, north], abs=1e-9)
        cell = Block.parse(block_id).bounds  # the pixels whose centres lie in the cell: within half a pixel of it
        half_pixel_deg = 0.5 * a / 6378137.0 * 180 / 3.141592653589793
        assert item["bbox"] == pytest.approx(list(cell), abs=half_pixel_deg * 1.0001)
        ring = item["geometry"]["coordinates"][0]
        assert [min(x for x, _ in ring), min(y for _, y in ring), max(x for x, _ in ring), max(y for _, y in ring)] \
            == item["bbox"]  # fmt: skip
        assert props["mapper:datetime_basis"] == "run" and props["start_datetime"] <= props["datetime"]
        bands = item["assets"]["cropland"]["raster:bands"]
        assert (bands[0]["data_type"], bands[0]["nodata"]) == ("uint8", 255)
        assert "1 = cropland" in bands[0]["description"]


def test_published_catalog_under_href_base(run_copy, offline):
    result = export(run_copy, "--out", run_copy / "published", "--href-base", BASE)
    assert result.exit_code == 0, result.output
    out = run_copy / "published"
    collection = json.loads((out / "collection.json").read_text())
    self_links = [link["href"] for link in collection["links"] if link["rel"] == "self"]
    assert self_links == [BASE + "published/collection.json"]
    documents = [collection, *items_of(out).values()]
    for doc in documents:
        assert all(link["href"].startswith(BASE + "published/") for link in doc["links"]), doc["links"]
        for asset in doc["assets"].values():
            assert asset["href"].startswith(BASE) and (run_copy / asset["href"][len(BASE):]).is_file(), asset
    for path in [out / "collection.json", *out.glob("*/*.json")]:  # links are URLs: each document on its own
        valid, messages = stac_validate(path, recursive=False)
        assert valid, messages


def test_no_token_reaches_the_catalog(world_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(world_run, run)
    secret = "pk.SECRET-token-0123456789"
    for name in ("config.yaml", "run.json"):  # as if a token had slipped into the saved URL templates
        path = run / name
        path.write_text(path.read_text().replace("{token}", secret))
    monkeypatch.setenv("MAPBOX_ACCESS_TOKEN", secret)
    assert export(run).exit_code == 0
    for path in (run / "stac").rglob("*"):
        assert not path.is_file() or secret not in path.read_text(), path
        assert not path.is_file() or "access_token" not in path.read_text(), path


def test_the_export_refuses_to_write_a_token_it_would_leak(world_run, tmp_path, monkeypatch):
    """The guard behind the rule: were a token value ever in what the catalog takes (here an attribution of a
    source that names the token's variable), nothing is written."""
    run = tmp_path / "run"
    shutil.copytree(world_run, run)
    secret = "pk.SECRET-token-0123456789"
    identity = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**identity, "sources": ["mapbox"]}))
    config = (run / "config.yaml").read_text().replace("attribution: © Mapbox", f"attribution: © Mapbox {secret}")
    (run / "config.yaml").write_text(config)
    monkeypatch.setenv("MAPBOX_ACCESS_TOKEN", secret)
    result = export(run)
    assert result.exit_code == 2 and "token" in result.stderr, result.output
    assert not (run / "stac").exists()


def test_imagery_dates_from_the_mosaics_replace_the_run_time(world_run, tmp_path, offline):
    import rasterio

    run = tmp_path / "run"
    shutil.copytree(world_run, run)
    block_id = block_ids(run)[0]
    for source, date in (("demo-a", "2020-05-03"), ("demo-b", "2020-06-01")):
        with rasterio.open(run / "mosaics" / source / f"{block_id}.tif", "r+") as dst:
            dst.update_tags(ACQUISITION_DATE=date)
    assert export(run).exit_code == 0
    props = items_of(run / "stac")[block_id]["properties"]
    assert props["mapper:datetime_basis"] == "imagery" and props["datetime"] is None
    assert (props["start_datetime"], props["end_datetime"]) == ("2020-05-03T00:00:00Z", "2020-06-01T23:59:59Z")
    valid, messages = stac_validate(run / "stac" / "collection.json")
    assert valid, messages


def test_not_a_run_directory_gives_one_line_and_exit_2(tmp_path):
    res = subprocess.run([sys.executable, "-m", "mapper.cli", "export", "stac", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "is not a run directory" in res.stderr
    assert "`mapper run --out DIR`" in res.stderr and "Traceback" not in res.stderr


def test_a_dry_run_and_unsafe_outputs_are_refused(run_copy, tmp_path):
    dry = tmp_path / "dry"
    dry.mkdir()
    for name in ("run.json", "config.yaml", "state.sqlite"):
        shutil.copy(run_copy / name, dry / name)
    identity = json.loads((dry / "run.json").read_text())
    (dry / "run.json").write_text(json.dumps({**identity, "dry_run": True}))
    cases = [
        ([dry], "dry run"),
        ([run_copy, "--out", run_copy], "holds the run directory"),
        ([run_copy, "--out", run_copy / "final"], "holds other files"),
        ([run_copy, "--out", tmp_path / "outside", "--href-base", BASE], "must lie inside"),
        ([run_copy, "--href-base", "example.org/runs"], "is not a URL"),
    ]
    for args, words in cases:
        result = export(*args)
        assert result.exit_code == 2 and words in result.stderr, (args, result.output)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert block_ids(run_copy) and (run_copy / "run.json").is_file()  # nothing of the run was touched


def test_export_again_replaces_the_catalog_whole(catalog, run_copy):
    (catalog / "stray.txt").write_text("left by hand")
    assert export(run_copy).exit_code == 0
    assert not (catalog / "stray.txt").exists() and (catalog / "collection.json").is_file()
    assert not [p for p in run_copy.iterdir() if p.name.startswith(".stac")]  # no temporary folder left


def test_pending_and_failed_blocks_are_left_out_and_named(world_run, tmp_path, offline):
    from mapper.store.run_store import RunStore

    run = tmp_path / "run"
    shutil.copytree(world_run, run)
    done = block_ids(run)[0]
    ix, iy = map(int, done.split("_"))
    pending, failed = f"{ix + 1}_{iy}", f"{ix}_{iy + 1}"
    store = RunStore.open(run)
    store.add_blocks([(pending, ix + 1, iy, "Guangdong", 1.0), (failed, ix, iy + 1, "Guangdong", 1.0)])
    store.record(failed, "demo-a", "fetch", error="HTTP 500 from the tile server", max_attempts=1)
    store.close()
    (run / "driver.lock").write_text("{}")  # a driver works on it (or was killed): exported as it stands

    result = export(run)
    assert result.exit_code == 0, result.output
    assert "1 item(s) of 3 planned block(s)" in result.stdout
    assert "1 pending and 1 failed" in result.stderr and "driver.lock" in result.stderr
    collection = json.loads((run / "stac" / "collection.json").read_text())
    assert collection["mapper:blocks"] == {"planned": 3, "exported": 1, "pending": 1, "failed": 1}
    assert collection["mapper:missing"]["pending"] == [pending]
    assert collection["mapper:missing"]["failed"][0]["block_id"] == failed
    assert "HTTP 500" in collection["mapper:missing"]["failed"][0]["error"]
    assert collection["mapper:run_in_progress"] is True
    assert str(run) not in json.dumps(collection)  # no local path in what may be published
    assert sorted(items_of(run / "stac")) == [done]
    valid, messages = stac_validate(run / "stac" / "collection.json")
    assert valid, messages


def test_collection_records_the_method_models_and_world(catalog, run_copy):
    collection = json.loads((catalog / "collection.json").read_text())
    identity = json.loads((run_copy / "run.json").read_text())
    assert collection["mapper:method"] == "CropLayer"
    assert collection["mapper:version"] == identity["mapper_version"]
    assert {k: v["sha256"] for k, v in collection["mapper:models"].items()} == identity["models"]
    assert collection["mapper:models"]["segmentation"]["name"] == identity["config"]["run"]["models"]["segmentation"]
    assert collection["mapper:world_seed"] == identity["world_seed"]
    assert [p["roles"] for p in collection["providers"]][-1] == ["processor"]
    assert os.path.basename(collection["links"][0]["href"]) == "collection.json"
