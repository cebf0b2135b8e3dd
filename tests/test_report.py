"""`mapper report`: the self-contained HTML page of a run, rendered in headless Chromium (Debian's chromium
package): every figure loads, the numbers on the page are those of `mapper validate --json`, a screenshot is
not blank; a figure that cannot be drawn is said on the page without losing the report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mapper.cli.report import report
from mapper.cli.validate import validate

pytestmark = pytest.mark.slow


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no Chromium on PATH; install Debian's package: `apt-get install chromium`")


def headless(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    # --no-sandbox: CI runs as root; --virtual-time-budget lets the page's load handler run before the dump
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--virtual-time-budget=10000", *args]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


class _Page(HTMLParser):
    """What the test reads of the rendered DOM: the body's image counts, the images, the numbered cells."""

    def __init__(self):
        super().__init__()
        self.body: dict = {}
        self.images: list[str] = []
        self.numbers: dict[str, object] = {}
        self.warning_hidden = True

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif "data-key" in a:
            self.numbers[a["data-key"]] = json.loads(a["data-value"])
        if a.get("id") == "image-warning":
            self.warning_hidden = "hidden" in a


def rendered(html_path: Path) -> _Page:
    page = _Page()
    page.feed(headless("--dump-dom", html_path.resolve().as_uri()).stdout)
    return page


def lookup(tree, key: str):
    for part in key.split("."):
        tree = tree[int(part)] if isinstance(tree, list) else tree[part]
    return tree


@pytest.fixture(scope="module")
def page_and_validation(world_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    res = CliRunner().invoke(report, [str(world_run), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output, res.output
    val = CliRunner().invoke(validate, [str(world_run), "--json", "-q"])
    assert val.exit_code == 0, val.output
    return out, json.loads(val.output)


def test_every_figure_loads_and_the_page_is_self_contained(page_and_validation):
    out, _ = page_and_validation
    text = out.read_text(encoding="utf-8")
    page = rendered(out)
    assert (
        len(page.images) == 10
    )  # area fraction, coverage A and B, decisions, correctness, IoU, area, importance, preview, gallery
    assert all(src.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for src in page.images)
    assert page.body.get("data-images-total") == "10" and page.body.get("data-images-loaded") == "10"
    assert page.warning_hidden
    assert "Not drawn" not in text
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)  # nothing fetched from elsewhere


def test_the_numbers_on_the_page_are_those_of_validate_json(page_and_validation):
    out, validation = page_and_validation
    numbers = rendered(out).numbers
    for key in ("pixel_iou.final.iou", "pixel_iou.demo-a.iou", "pixel_iou.demo-b.recall",
                "semantic_correctness.final.rate", "provinces.0.pcs", "provinces.0.mapped_ha",
                "provinces.0.statistic_ha", "provinces.0.stop.stop"):  # fmt: skip
        assert key in numbers, sorted(numbers)
    for key, value in numbers.items():
        assert value == lookup(validation, key), key
    assert len(numbers) >= 20


def test_a_screenshot_is_readable(page_and_validation, tmp_path):
    out, _ = page_and_validation
    shot = tmp_path / "shot.png"
    headless("--window-size=1200,2400", f"--screenshot={shot}", out.resolve().as_uri())
    image = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert image.shape == (2400, 1200)
    assert image.std() > 20  # text, tables and maps; a blank or failed page is flat
    assert (image < 100).mean() > 0.01  # dark text and lines on a light page


def test_a_broken_figure_shows_a_banner(page_and_validation, tmp_path):
    """The page's own check can fail: an image whose data is corrupt is counted and announced."""
    out, _ = page_and_validation
    text = out.read_text(encoding="utf-8")
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r'src="data:image/png;base64,[^"]{40}', 'src="data:image/png;base64,AAAA', text, count=1))
    page = rendered(broken)
    assert page.body.get("data-images-loaded") == "9" and page.body.get("data-images-total") == "10"
    assert not page.warning_hidden


def test_a_run_without_its_block_table_still_gets_a_report(world_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(world_run, copy)
    (copy / "blocks.parquet").unlink()
    res = CliRunner().invoke(report, [str(copy), "-q"])
    assert res.exit_code == 0, res.output
    assert "blocks.parquet is missing" in res.output and "mapper run --resume" in res.output
    text = (copy / "report" / "index.html").read_text(encoding="utf-8")
    assert text.count("Not drawn:") == 4  # the four block maps; the charts from the validation are there
    assert "Semantic correctness distribution" in text


def test_comparisons_of_the_run_are_in_the_report(world_run, tmp_path):
    """`mapper compare` results in RUN_DIR/compare/ join the report as figures with their numbers."""
    from mapper.cli.compare import compare

    copy = tmp_path / "run"
    shutil.copytree(world_run, copy, ignore=shutil.ignore_patterns("compare"))
    res = CliRunner().invoke(compare, [str(copy), str(copy / "map" / "cropland.vrt"), "--name", "itself", "-q"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(report, [str(copy), "-q"])
    assert res.exit_code == 0 and "(12 figures;" in res.output, res.output
    html_path = copy / "report" / "index.html"
    assert "Deviation map against cropland.vrt" in html_path.read_text(encoding="utf-8")
    assert "IoU 1.000" in html_path.read_text(encoding="utf-8")
    page = rendered(html_path)
    assert page.body.get("data-images-loaded") == page.body.get("data-images-total") == "12"


def test_a_validation_of_the_same_inputs_is_reused_and_a_changed_input_revalidates(world_run, tmp_path, monkeypatch):
    """A province's validation can take hours: the report takes RUN_DIR/validation.json when its basis (run
    state, final files, labels, statistics, extra rounds) is the current one, and validates again otherwise."""
    import os

    import mapper.validation.validate as validate_module

    copy = tmp_path / "run"
    shutil.copytree(world_run, copy, ignore=shutil.ignore_patterns("compare"))
    (copy / "validation.json").unlink(missing_ok=True)
    calls = []
    real = validate_module._build_report

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(validate_module, "_build_report", counted)
    runner = CliRunner()

    def make_report(*extra):
        res = runner.invoke(report, [str(copy), "-q", *extra])
        assert res.exit_code == 0, res.output
        return res.output

    assert "validated now" in make_report() and len(calls) == 1
    saved = json.loads((copy / "validation.json").read_text())
    out = make_report()
    assert "validation reused" in out and len(calls) == 1  # same inputs: nothing recomputed
    assert "computed earlier from the same inputs" in (copy / "report" / "index.html").read_text(encoding="utf-8")
    assert json.loads((copy / "validation.json").read_text()) == saved  # left as it was
    make_report("--extra-rounds", "1")
    assert len(calls) == 2  # another input: validated again
    make_report("--extra-rounds", "1", "--revalidate")
    assert len(calls) == 3
    final = next((copy / "final").glob("*.tif"))
    os.utime(final, ns=(final.stat().st_atime_ns, final.stat().st_mtime_ns + 10**9))  # a rewritten final map
    make_report("--extra-rounds", "1")
    assert len(calls) == 4
