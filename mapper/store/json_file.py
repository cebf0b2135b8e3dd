"""Reading the JSON files mapper writes with a "format" tag (checkpoint.json, run.json, campaign.json, …).

One reader, so that every such file fails the same way: a message that names the file, what it should have
been and the caller's fix, raised as the caller's own error class (CheckpointError, RunStoreError, …) so
the command-line shows it as one line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def read_json(
    path: Path | str,
    fmt: str,
    what: str,
    fix: str,
    error: type[Exception] = ValueError,
    required: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON object in `path`, whose "format" must be `fmt` and which must hold the `required` keys.

    `what` names the kind of file ("a mapper checkpoint"), `fix` what the user should do; the file not
    being there is left to the caller (FileNotFoundError), which usually knows the better message."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path} is not valid JSON ({e}); {fix}") from e
    if not isinstance(data, dict) or data.get("format") != fmt:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise error(f"{path} is not {what}: its format is {got!r}, not {fmt!r}; {fix}")
    lacking = [k for k in required if k not in data]
    if lacking:
        raise error(f"{path} lacks {', '.join(lacking)}; {fix}")
    return data
