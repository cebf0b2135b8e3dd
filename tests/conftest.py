import os

import pytest

# Tests never touch the user's real tile cache.
os.environ.setdefault("MAPPER_CACHE_DIR", "/tmp/mapper-test-cache-unused")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MAPPER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"
