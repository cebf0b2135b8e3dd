"""HTTP tile source against a loopback server: templates, tokens, every failure mode, rate limits, Google."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from pydantic import ValidationError

from mapper.config.models import ConfigError, MapperConfig, MissingTokenError
from mapper.imagery.decode import decode_tile, encode_jpeg, encode_png
from mapper.imagery.http import (
    HttpSourceError,
    HttpTileSource,
    RateLimiter,
    open_http_source,
    quadkey,
)
from mapper.imagery.http_config import GoogleTilesConfig, XYZSourceConfig
from mapper.imagery.sources import open_source
from mapper.secrets import redact

SECRET = "pk.SECRETtoken-1234567890abcdef"
TOKEN_ENV = "MAPPER_TEST_TILE_TOKEN"
GKEY = "AIzaSECRETgooglekey0987654321"
GKEY_ENV = "MAPPER_TEST_GOOGLE_KEY"


# ------------------------------------------------------------------------------------------ test server
@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # stall before the status line
    cut: int | None = None  # send only this many body bytes (with the full Content-Length), then close
    body_stall: float = 0.0  # send half the body, stall, then the rest


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def log_message(self, *args):  # keep test output clean
        pass

    def _serve(self, method: str) -> None:
        srv = self.server
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        with srv.lock:
            srv.log.append((method, self.path, payload))
            srv.counts[parts.path] += 1
            n = srv.counts[parts.path]
        reply = srv.responder(method, parts.path, parse_qs(parts.query), n, payload)
        try:
            if reply.delay:
                time.sleep(reply.delay)
            self.send_response(reply.status)
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if reply.cut is not None:
                self.wfile.write(reply.body[: reply.cut])
                self.wfile.flush()
                self.close_connection = True
                return
            if reply.body_stall:
                half = len(reply.body) // 2
                self.wfile.write(reply.body[:half])
                self.wfile.flush()
                time.sleep(reply.body_stall)
                self.wfile.write(reply.body[half:])
            else:
                self.wfile.write(reply.body)
        except OSError:  # the client gave up (timeout): nothing to do
            self.close_connection = True

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")


class TileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, responder):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.responder = responder
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, bytes]] = []
        self.counts: Counter[str] = Counter()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def handle_error(self, request, client_address):  # clients that time out are expected here
        pass

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def paths(self, method: str = "GET") -> list[str]:
        with self.lock:
            return [urlsplit(p).path for m, p, _ in self.log if m == method]


@pytest.fixture
def serve():
    servers: list[TileServer] = []

    def start(responder) -> TileServer:
        s = TileServer(responder)
        s.thread.start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, SECRET)
    return SECRET


def tile_rgb(z: int, x: int, y: int) -> np.ndarray:
    rng = np.random.default_rng([z, x, y])
    return np.kron(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8))


def tile_png(z: int, x: int, y: int) -> bytes:
    return encode_png(tile_rgb(z, x, y))


def xyz_config(url: str, **kw) -> XYZSourceConfig:
    base = dict(
        url=url,
        connect_timeout_s=1.0,
        read_timeout_s=1.0,
        max_concurrency=4,
        retry=dict(total=2, backoff_factor=0.01, backoff_max_s=0.05),
    )
    base.update(kw)
    return XYZSourceConfig(**base)


def zxy(path: str) -> tuple[int, int, int]:
    z, x, y = path.strip("/").split("/")[-3:]
    return int(z), int(x), int(y.split(".")[0])


# ------------------------------------------------------------------------------------------- templates
def test_template_without_zxy_is_a_config_error():
    with pytest.raises(ValidationError, match=r"\{z\}, \{x\} and \{y\}"):
        XYZSourceConfig(url="https://example.com/tiles.png")
    with pytest.raises(ValidationError, match="subdomains"):
        XYZSourceConfig(url="https://{s}.example.com/{z}/{x}/{y}.png")
    with pytest.raises(ConfigError, match=r"unknown placeholder.*\{zoom\}"):
        HttpTileSource("t", XYZSourceConfig(url="https://example.com/{zoom}/{z}/{x}/{y}.png"))
    with pytest.raises(ConfigError, match="token_env"):
        HttpTileSource("t", XYZSourceConfig(url="https://example.com/{z}/{x}/{y}.png?access_token={token}"))


def test_quadkey_and_subdomains(token):
    assert quadkey(3, 3, 5) == "213"
    assert quadkey(1, 0, 0) == "0"
    cfg = XYZSourceConfig(
        url="https://{s}.example.com/a/{quadkey}.jpeg?z={z}&token={token}",
        subdomains=["t0", "t1", "t2"],
        token_env=TOKEN_ENV,
    )
    with HttpTileSource("t", cfg) as src:
        assert src.tile_url(3, 3, 5) == f"https://t2.example.com/a/213.jpeg?z=3&token={SECRET}"
        assert src.tile_url(3, 3, 6) == f"https://t0.example.com/a/231.jpeg?z=3&token={SECRET}"
        hosts = {src.tile_url(16, x, 100).split(".")[0] for x in range(6)}
        assert hosts == {"https://t0", "https://t1", "https://t2"}
        assert src.tile_url(5, 1, 2) == src.tile_url(5, 1, 2)  # deterministic
        assert SECRET not in repr(src)


def test_quadkey_template_over_http(serve):
    srv = serve(lambda m, path, q, n, p: Reply(body=tile_png(3, 3, 5)))
    with HttpTileSource("qk", xyz_config(f"{srv.base}/qk/{{quadkey}}.png")) as src:
        result = src.get_tiles([(3, 3, 5)])[(3, 3, 5)]
    assert result.ok
    assert srv.paths() == ["/qk/213.png"]


# --------------------------------------------------------------------------------------------- tokens
def test_missing_token_fails_before_any_request(serve, monkeypatch, tmp_path):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    srv = serve(lambda *a: Reply(body=tile_png(1, 0, 0)))
    cfg = xyz_config(f"{srv.base}/{{z}}/{{x}}/{{y}}.png?access_token={{token}}", token_env=TOKEN_ENV)
    with pytest.raises(MissingTokenError) as err:
        open_http_source("mapbox", cfg)
    assert TOKEN_ENV in str(err.value)
    # through the generic entry point too, and before the cache file is created
    config = MapperConfig(sources={"mapbox": cfg}, cache={"dir": tmp_path / "cache"})
    with pytest.raises(MissingTokenError, match=TOKEN_ENV):
        open_source("mapbox", config)
    monkeypatch.setenv(TOKEN_ENV, "   ")
    with pytest.raises(MissingTokenError, match=TOKEN_ENV):
        open_http_source("mapbox", cfg)
    assert srv.log == []
    assert not (tmp_path / "cache").exists()


def test_redact():
    text = "GET /v4/a/1/2/3.jpg?access_token=abc.DEF-123&x=1 and key=AIzaXYZ, apikey=zz token=t1"
    out = redact(text)
    assert "abc.DEF-123" not in out and "AIzaXYZ" not in out and "zz" not in out and "t1" not in out
    assert "access_token=***" in out and "key=***" in out and "&x=1" in out
    assert redact("value s3cr3t-value here", ["s3cr3t-value"]) == "value *** here"


# ------------------------------------------------------------------------------------ per-tile outcomes
def _placeholder_png() -> bytes:
    yy, xx = np.indices((256, 256))
    # a 'no imagery' checkerboard, recognised by its sha256 only
    rgb = np.dstack([(xx // 32 + yy // 32) % 2 * 40 + 200] * 3).astype(np.uint8)
    return encode_png(rgb)


def _outcome_responder(method, path, query, n, payload):
    z, x, y = zxy(path)
    good = tile_png(z, x, y)
    kind = SCENARIOS[x][0]
    if kind == "ok":
        return Reply(body=good, headers={"Content-Type": "image/png"})
    if kind == "403":
        return Reply(403, b'{"message": "Not Authorized - Invalid Token"}')
    if kind == "401":
        return Reply(401, b"unauthorized")
    if kind == "404":
        return Reply(404, b"Tile not found")
    if kind == "204":
        return Reply(204)
    if kind == "500":
        return Reply(500, b"<html>Internal Server Error</html>")
    if kind == "500-once":
        return Reply(500) if n == 1 else Reply(body=good)
    if kind == "429":
        return Reply(429, b"slow down", headers={"Retry-After": "0"})
    if kind == "html":
        return Reply(200, b"<!DOCTYPE html><html><body>Service busy</body></html>", {"Content-Type": "text/html"})
    if kind == "jpeg-truncated":
        jpg = encode_jpeg(tile_rgb(z, x, y))
        return Reply(200, jpg[: len(jpg) // 2], {"Content-Type": "image/jpeg"})
    if kind == "png-truncated":
        return Reply(200, good[: len(good) - 20])
    if kind == "blank":
        return Reply(200, encode_png(np.full((256, 256, 3), 217, np.uint8)))
    if kind == "placeholder":
        return Reply(200, _placeholder_png())
    if kind == "hang":
        return Reply(body=good, delay=3.0)
    if kind == "hang-once":
        return Reply(body=good, delay=3.0 if n == 1 else 0.0)
    if kind == "stall-body-once":
        return Reply(body=good, body_stall=3.0 if n == 1 else 0.0)
    if kind == "cut":
        return Reply(body=good, cut=len(good) // 3)
    raise AssertionError(kind)


# x -> (scenario, expected: None for imagery, else a fragment of the reason)
SCENARIOS: dict[int, tuple[str, str | None]] = {
    0: ("ok", None),
    1: ("403", "access denied (HTTP 403)"),
    2: ("401", "access denied (HTTP 401)"),
    3: ("404", "not found (HTTP 404)"),
    4: ("204", "not found (HTTP 204)"),
    5: ("500", "HTTP 500 after 3 attempts"),
    6: ("500-once", None),
    7: ("429", "HTTP 429 after 3 attempts"),
    8: ("html", "text/HTML"),
    9: ("jpeg-truncated", "truncated JPEG"),
    10: ("png-truncated", "truncated PNG"),
    11: ("blank", "blank tile"),
    12: ("placeholder", "placeholder tile"),
    13: ("hang", "read timed out after 3 attempts"),
    14: ("hang-once", None),
    15: ("stall-body-once", None),
    16: ("cut", "connection dropped during the body after 3 attempts"),
}


@pytest.mark.network
def test_every_failure_mode_has_its_outcome_and_no_token_leaks(serve, token, caplog):
    caplog.set_level(logging.DEBUG)
    srv = serve(_outcome_responder)
    cfg = xyz_config(
        f"{srv.base}/v4/sat/{{z}}/{{x}}/{{y}}.png?access_token={{token}}",
        token_env=TOKEN_ENV,
        read_timeout_s=0.5,
        max_concurrency=len(SCENARIOS),
        placeholder_sha256=[hashlib.sha256(_placeholder_png()).hexdigest()],
    )
    keys = [(16, x, 100) for x in SCENARIOS]
    with open_http_source("mapbox", cfg) as src:
        out = src.fetch_bodies(keys)
        assert SECRET not in repr(src)

    for (z, x, y), (body, result) in out.items():
        kind, expected = SCENARIOS[x]
        if expected is None:
            assert result.ok, f"{kind}: {result.missing}"
            np.testing.assert_array_equal(result.rgb, tile_rgb(z, x, y))
            assert body == tile_png(z, x, y)
        else:
            assert not result.ok, kind
            assert expected in result.missing, f"{kind}: {result.missing!r}"
            assert body is None, kind
    denied = out[(16, 1, 100)][1].missing
    assert TOKEN_ENV in denied and SECRET not in denied

    counts = Counter(zxy(p)[1] for p in srv.paths())
    assert counts[5] == 3 and counts[7] == 3 and counts[3] == 1 and counts[1] == 1  # bounded; 4xx not retried
    assert counts[6] == 2 and counts[14] == 2 and counts[15] == 2

    # the server saw the token; nothing on our side shows it
    assert all(SECRET in p for _, p, _ in srv.log)
    for record in caplog.records:
        assert SECRET not in record.getMessage(), record.getMessage()
    assert any("access_token=***" in r.getMessage() for r in caplog.records)  # urllib3 debug lines, redacted
    for _, result in out.values():
        assert SECRET not in (result.missing or "")


@pytest.mark.network
def test_retry_after_is_honoured(serve):
    def responder(method, path, query, n, payload):
        if n == 1:
            return Reply(429, b"too many", {"Retry-After": "1"})
        return Reply(body=tile_png(*zxy(path)))

    srv = serve(responder)
    with HttpTileSource("t", xyz_config(f"{srv.base}/{{z}}/{{x}}/{{y}}.png")) as src:
        t0 = time.monotonic()
        result = src.get_tiles([(16, 7, 7)])[(16, 7, 7)]
        elapsed = time.monotonic() - t0
    assert result.ok
    assert len(srv.log) == 2
    assert elapsed >= 0.9  # slept what the server asked, not the 0.01 s back-off


@pytest.mark.network
def test_connection_refused_is_missing_without_token(token, caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = xyz_config(f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png?access_token={{token}}", token_env=TOKEN_ENV)
    with open_http_source("t", cfg) as src:
        result = src.get_tiles([(2, 1, 1)])[(2, 1, 1)]
    assert not result.ok and "after 3 attempts" in result.missing
    assert SECRET not in result.missing
    assert all(SECRET not in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------------------- rate limit
def test_rate_limiter_spacing():
    limiter = RateLimiter(50.0)
    t0 = time.monotonic()
    for _ in range(11):
        limiter.acquire()
    assert time.monotonic() - t0 >= 10 / 50 * 0.95


@pytest.mark.network
def test_rate_limit_is_respected(serve):
    stamps: list[float] = []

    def responder(method, path, query, n, payload):
        stamps.append(time.monotonic())
        return Reply(body=tile_png(*zxy(path)))

    srv = serve(responder)
    cfg = xyz_config(f"{srv.base}/{{z}}/{{x}}/{{y}}.png", max_requests_per_second=20, max_concurrency=8)
    keys = [(16, x, 1) for x in range(11)]
    with HttpTileSource("t", cfg) as src:
        t0 = time.monotonic()
        out = src.get_tiles(keys)
        elapsed = time.monotonic() - t0
    assert all(r.ok for r in out.values())
    assert elapsed >= 10 / 20 * 0.95  # 11 requests at 20/s with a burst of 1
    stamps.sort()
    assert stamps[-1] - stamps[0] >= 10 / 20 * 0.9
    assert len(srv.log) == 11


# --------------------------------------------------------------------------------------------- Google
class GoogleServer:
    def __init__(self, *, expired_first: bool = False, refuse: int | None = None):
        self.sessions: list[str] = []
        self.expired_first = expired_first
        self.refuse = refuse

    def __call__(self, method, path, query, n, payload):
        if method == "POST" and path == "/v1/createSession":
            if self.refuse:
                return Reply(self.refuse, b'{"error": {"message": "API key not valid"}}')
            if query.get("key") != [GKEY]:
                return Reply(400, b"missing key")
            req = json.loads(payload)
            assert req == {"mapType": "satellite", "language": "en-US", "region": "US"}
            sid = f"session-{len(self.sessions) + 1}"
            self.sessions.append(sid)
            expiry = time.time() - 5 if (self.expired_first and len(self.sessions) == 1) else time.time() + 1e5
            return Reply(200, json.dumps({"session": sid, "expiry": str(int(expiry)), "tileWidth": 256}).encode())
        if method == "GET" and path.startswith("/v1/2dtiles/"):
            if query.get("key") != [GKEY] or query.get("session") != [self.sessions[-1]]:
                return Reply(403, b"bad session")
            return Reply(body=tile_png(*zxy(path)))
        return Reply(404)


def google_config(base: str, **kw) -> GoogleTilesConfig:
    cfg = dict(
        token_env=GKEY_ENV,
        session_url=f"{base}/v1/createSession",
        tile_url=f"{base}/v1/2dtiles/{{z}}/{{x}}/{{y}}?session={{session}}&key={{token}}",
        connect_timeout_s=1.0,
        read_timeout_s=1.0,
        max_concurrency=4,
        retry=dict(total=1, backoff_factor=0.01, backoff_max_s=0.05),
    )
    cfg.update(kw)
    return GoogleTilesConfig(**cfg)


@pytest.mark.network
def test_google_session_quota_and_rate(serve, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(GKEY_ENV, GKEY)
    google = GoogleServer()
    srv = serve(google)
    with open_http_source("google", google_config(srv.base, tiles_per_day=5, tiles_per_minute=1200)) as src:
        t0 = time.monotonic()
        first = src.get_tiles([(16, x, 2) for x in range(3)])
        elapsed = time.monotonic() - t0
        second = src.get_tiles([(16, x, 3) for x in range(4)])
    assert all(r.ok for r in first.values())
    assert elapsed >= 2 / 20 * 0.9  # tiles_per_minute=1200 -> 20/s
    assert sum(r.ok for r in second.values()) == 2
    assert sorted(r.missing for r in second.values() if not r.ok) == ["daily quota of 5 tiles reached"] * 2
    assert len(google.sessions) == 1 and len(srv.paths("POST")) == 1
    assert srv.log[0][0] == "POST"  # the session came before the first tile
    tile_queries = [parse_qs(urlsplit(p).query) for m, p, _ in srv.log if m == "GET"]
    assert len(tile_queries) == 5 and all(q["session"] == ["session-1"] for q in tile_queries)
    assert all(GKEY not in r.getMessage() for r in caplog.records)


@pytest.mark.network
def test_google_session_renewed_when_expired(serve, monkeypatch):
    monkeypatch.setenv(GKEY_ENV, GKEY)
    google = GoogleServer(expired_first=True)
    srv = serve(google)
    with open_http_source("google", google_config(srv.base)) as src:
        out = src.get_tiles([(16, 5, 5)])
    assert out[(16, 5, 5)].ok
    assert google.sessions == ["session-1", "session-2"]
    assert parse_qs(urlsplit(srv.log[-1][1]).query)["session"] == ["session-2"]


@pytest.mark.network
def test_google_refused_key_is_a_clear_error(serve, monkeypatch):
    monkeypatch.setenv(GKEY_ENV, GKEY)
    srv = serve(GoogleServer(refuse=403))
    with open_http_source("google", google_config(srv.base)) as src, pytest.raises(HttpSourceError) as err:
        src.get_tiles([(16, 1, 1)])
    message = str(err.value)
    assert GKEY_ENV in message and "HTTP 403" in message
    assert GKEY not in message and GKEY not in repr(err.value)
    assert err.value.__cause__ is None
    assert srv.paths("GET") == []


def test_google_missing_key_fails_fast(monkeypatch):
    monkeypatch.delenv(GKEY_ENV, raising=False)
    with pytest.raises(MissingTokenError, match=GKEY_ENV):
        open_http_source("google", google_config("http://127.0.0.1:9"))


def test_decoded_fixture_tiles_are_exact():
    rgb, valid = decode_tile(tile_png(16, 1, 2))
    np.testing.assert_array_equal(rgb, tile_rgb(16, 1, 2))
    assert valid is None


@pytest.mark.network
def test_open_source_wraps_http_in_the_cache(serve, token, tmp_path):
    import pickle

    from mapper.imagery.cached_source import CachedSource

    srv = serve(lambda method, path, query, n, payload: Reply(body=tile_png(*zxy(path))))
    cfg = xyz_config(f"{srv.base}/{{z}}/{{x}}/{{y}}.png?access_token={{token}}", token_env=TOKEN_ENV)
    config = MapperConfig(sources={"mapbox": cfg}, cache={"dir": tmp_path})
    ks = [(16, x, 9) for x in range(5)]
    for _ in range(2):
        with open_source("mapbox", config) as src:
            assert isinstance(src, CachedSource)
            out = src.get_tiles(ks)
            assert all(out[k].ok for k in ks)
    assert len(srv.log) == 5  # the second run came from the cache
    assert (tmp_path / "mapbox.mbtiles").exists()
    with HttpTileSource("mapbox", cfg) as src:
        blob = pickle.dumps(src)  # the token stays out of the pickle; it is read again from the environment
        assert SECRET.encode() not in blob
        with pickle.loads(blob) as copy:
            assert copy.tile_url(1, 0, 0) == src.tile_url(1, 0, 0)
