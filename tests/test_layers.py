"""Dependencies run one way, downward (DESIGN.md): checked on the source, every import (also those inside
functions) counted, so a new upward import fails here rather than as an import circle at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_packages(package_dir: Path) -> set[str]:
    """The mapper subpackages that the modules of `package_dir` import (any import statement, any depth)."""
    out = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            out |= {n.split(".")[1] for n in names if n.startswith("mapper.") and n.count(".") >= 1}
    return out - {package_dir.name}


def test_imagery_never_imports_the_simulated_world():
    assert "world" not in imported_packages(ROOT / "mapper" / "imagery"), (
        "mapper/imagery must not import mapper.world: the world registers as a source kind (entry point "
        "mapper.sources) instead"
    )


def test_lower_layers_never_import_the_run_the_cli_or_ray():
    for low in ("config", "store", "grid", "imagery", "world", "features", "labels", "iqa", "seg", "decide"):
        upward = imported_packages(ROOT / "mapper" / low) & {"cli", "run", "al", "croptype", "pipelines", "validation"}
        assert not upward, f"mapper/{low} imports {sorted(upward)}"


def test_the_world_is_found_through_the_source_registry_without_imagery_importing_it():
    code = (
        "import sys\n"
        "from mapper.config import load_config\n"
        "from mapper.imagery.sources import open_source\n"
        "assert 'mapper.world' not in sys.modules, 'imagery loaded the world'\n"
        "src = open_source('demo-a', load_config([]))\n"
        "print(type(src).__module__, src.rendering)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["mapper.world.source", "a"]
