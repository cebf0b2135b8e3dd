import os
import socket
import stat
import uuid

import pytest

from mapper.store.atomic import atomic_path, atomic_write_text, remove_stale_temporary_files_under


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_a_directory_write_removes_what_a_killed_writer_left(tmp_path):
    """A kill -9 inside atomic_directory leaves its temporary directory; the next write of the same directory
    removes it when its writer (this host, a pid) is gone, and keeps a running writer's and another host's."""
    import os
    import socket
    import subprocess
    import sys

    from mapper.store.atomic import atomic_directory

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    host = socket.gethostname()
    left = tmp_path / f".model.{host}-{dead}.0123abcd.tmp"
    live = tmp_path / f".model.{host}-{os.getpid()}.4567cdef.tmp"
    other = tmp_path / f".model.another-host-{dead}.89abcdef.tmp"
    for d in (left, live, other):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "weights").write_bytes(b"half")
    with atomic_directory(tmp_path / "model") as tmp:
        (tmp / "weights").write_bytes(b"whole")
    assert (tmp_path / "model" / "weights").read_bytes() == b"whole"
    assert not left.exists() and live.exists() and other.exists()


def test_a_new_run_removes_the_files_a_killed_creation_left(tmp_path):
    """kill -9 inside a run's creation leaves `.config.yaml.<hex>.yaml.tmp` and no run.json; creating the run
    again removes it (and nothing that is not a temporary of the run's own files)."""
    from mapper.config.loader import load_config
    from mapper.run.plan import resolve_region
    from mapper.run.session import RunRequest, open_store
    from mapper.store.atomic import remove_stale_temporary_files

    out = tmp_path / "run"
    out.mkdir()
    (out / ".config.yaml.0123abcd.yaml.tmp").write_text("half a config")
    (out / ".run.json.4567.json.tmp").write_text("{")
    (out / ".notes.txt.89ab.txt.tmp").write_text("someone else's")
    assert remove_stale_temporary_files(out / "absent.txt") == 0
    req = RunRequest(load_config(), resolve_region(None, None, "114.31,22.81,114.34,22.84"), "demo", out=out)
    open_store(req, ["demo-a", "demo-b"]).close()
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == [".notes.txt.89ab.txt.tmp"]
    assert (out / "run.json").exists() and (out / "config.yaml").exists()


def test_stale_temporaries_under_a_tree_are_removed_and_nothing_else(tmp_path):
    names = []
    for target, suffix in ((tmp_path / "ledger.json", None), (tmp_path / "rounds" / "001" / "selection.parquet",
                           ".parquet"), (tmp_path / "runs" / "001-pool" / "masks" / "a" / "b.tif", None)):  # fmt: skip
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("whole")
        try:  # a writer killed mid-write: its temporary stays behind
            with atomic_path(target, suffix=suffix) as tmp:
                tmp.write_text("half")
                names.append(tmp)
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
    # atomic_path removes its temporary on an exception; a kill -9 does not: put them back as a kill leaves them
    for tmp in names:
        tmp.write_text("half")
    keep = [tmp_path / ".hidden", tmp_path / f"notes.{uuid.uuid4().hex}.txt", tmp_path / "rounds" / ".gitkeep"]
    for k in keep:
        k.write_text("mine")
    assert remove_stale_temporary_files_under(tmp_path, skip=("runs",)) == 2
    assert not names[0].exists() and not names[1].exists() and names[2].exists(), "runs/ is left to each run"
    assert all(k.exists() for k in keep) and (tmp_path / "ledger.json").read_text() == "whole"
    assert remove_stale_temporary_files_under(tmp_path) == 1 and not names[2].exists()
    # a checkpoint directory's temporary: removed once its writer is gone, never a live writer's
    host = socket.gethostname()
    dead = tmp_path / "models" / f".seg.{host}-{2**22 + 12345}.{uuid.uuid4().hex}.tmp"
    live = tmp_path / "models" / f".seg.{host}-{os.getpid()}.{uuid.uuid4().hex}.tmp"
    for d in (dead, live):
        (d / "weights").mkdir(parents=True)
    assert remove_stale_temporary_files_under(tmp_path) == 1 and not dead.exists() and live.exists()
