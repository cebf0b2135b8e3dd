"""XYZ tiles over HTTP (Mapbox-style templates and the Google Map Tiles API).

One `requests.Session` per source, with a connection pool as large as the worker pool and urllib3 `Retry`
for 429/5xx, connect errors and read timeouts (honouring `Retry-After`). Errors that happen while the body
is being read (a stall or a dropped connection mid-body) are retried here, within the same attempt budget.
A token-bucket limiter spaces requests (retries included) to `max_requests_per_second`.

Every tile comes back as imagery or as missing with a reason; one bad tile never raises. Tokens are read
from the environment (the config holds only the variable's name) and are never written anywhere: every
message that may contain a URL goes through `redact`, and a logging filter redacts the debug lines of
urllib3, which print request URLs with their query strings.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import mercantile
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from mapper.config.models import ConfigError
from mapper.imagery.decode import body_to_result
from mapper.imagery.http_config import GoogleTilesConfig, HttpSourceConfig, XYZSourceConfig
from mapper.imagery.tiles import TileKey, TileResult
from mapper.secrets import install_log_redaction, redact, register_secret

log = logging.getLogger(__name__)

USER_AGENT = "mapper/0.1 (cropland mapping; +https://github.com/)"
XYZ_FIELDS = frozenset({"z", "x", "y", "quadkey", "s", "token"})
GOOGLE_FIELDS = frozenset({"z", "x", "y", "session", "token"})
_PLACEHOLDER = re.compile(r"\{(\w*)\}")
_SESSION_RENEW_MARGIN_S = 60.0
_DAY_S = 86400.0


class HttpSourceError(RuntimeError):
    """The source as a whole cannot work (e.g. Google createSession refused the key)."""


install_log_redaction(__name__)


# ------------------------------------------------------------------------------------------ rate limiting
class RateLimiter:
    """Thread-safe token bucket: `rate` requests per second, bursts of at most `burst`.

    Callers reserve a slot under the lock and sleep outside it, so waiting threads are served in order.
    """

    def __init__(self, rate: float, burst: float = 1.0):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = max(1.0, float(burst))
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until it is available; returns the seconds waited."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            time.sleep(wait)
        return wait


class _LimitedRetry(Retry):
    """urllib3 Retry whose retries also wait for the source's rate limiter."""

    limiter: RateLimiter | None = None

    def new(self, **kw):
        retry = super().new(**kw)
        retry.limiter = self.limiter
        return retry

    def sleep(self, response=None) -> None:
        super().sleep(response)
        if self.limiter is not None:
            self.limiter.acquire()


def build_retry(config: HttpSourceConfig, limiter: RateLimiter | None = None) -> Retry:
    rc = config.retry
    extra = {}
    if "retry_after_max" in inspect.signature(Retry.__init__).parameters:  # urllib3 >= 2.5
        # Never park a worker longer than the configured back-off cap, whatever Retry-After says.
        extra["retry_after_max"] = max(1, math.ceil(rc.backoff_max_s))
    retry = _LimitedRetry(
        total=rc.total,
        backoff_factor=rc.backoff_factor,
        backoff_max=rc.backoff_max_s,
        status_forcelist=frozenset(rc.status_forcelist),
        respect_retry_after_header=rc.respect_retry_after,
        allowed_methods=frozenset({"GET", "HEAD", "POST"}),
        raise_on_status=False,  # hand back the last 429/5xx so the tile gets its reason
        raise_on_redirect=False,
        **extra,
    )
    retry.limiter = limiter
    return retry


# ------------------------------------------------------------------------------------------- templates
def template_fields(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def check_template(template: str, allowed: frozenset[str], *, what: str = "URL template") -> set[str]:
    """The placeholders of `template`; a ConfigError naming the problem if they cannot make tile URLs."""
    fields = template_fields(template)
    unknown = sorted(fields - allowed)
    if unknown:
        raise ConfigError(
            f"{what} {template!r} has unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
            f"allowed: {', '.join('{' + a + '}' for a in sorted(allowed))}"
        )
    if "quadkey" not in fields and not {"z", "x", "y"} <= fields:
        raise ConfigError(
            f"{what} {template!r} must contain {{z}}, {{x}} and {{y}} (or {{quadkey}}), "
            "e.g. https://example.com/tiles/{z}/{x}/{y}.jpg"
        )
    return fields


def fill_template(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def quadkey(z: int, x: int, y: int) -> str:
    return mercantile.quadkey(x, y, z)


# ----------------------------------------------------------------------------------------------- source
def open_http_source(name: str, config: XYZSourceConfig | GoogleTilesConfig) -> HttpTileSource:
    """The HTTP tile source `name`; raises MissingTokenError (naming the variable) before any request."""
    config.token()  # fail fast, before building anything
    return HttpTileSource(name, config)


class HttpTileSource:
    """A TileSource over HTTP: concurrent, rate-limited, retried, and silent about its token."""

    def __init__(self, name: str, config: XYZSourceConfig | GoogleTilesConfig):
        self.name = name
        self.config = config
        self._google = isinstance(config, GoogleTilesConfig)
        if not isinstance(config, XYZSourceConfig | GoogleTilesConfig):
            raise TypeError(f"not an HTTP tile source config: {type(config).__name__}")

        self._template = config.tile_url if self._google else config.url
        fields = check_template(self._template, GOOGLE_FIELDS if self._google else XYZ_FIELDS)
        if self._google and "session" not in fields:
            raise ConfigError(f"Google tile_url {self._template!r} must contain session={{session}}")
        uses_token = "token" in fields or any("{token}" in v for v in config.headers.values())
        if uses_token and not config.token_env:
            raise ConfigError(
                f"source {name!r}: the URL or headers use {{token}} but token_env is not set; "
                "set token_env to the name of the environment variable that holds the token"
            )
        if self._google and not config.token_env:
            raise ConfigError(f"source {name!r}: the Google Map Tiles API needs token_env (the API key)")
        self._subdomains = list(getattr(config, "subdomains", []) or [])

        token = config.token()  # MissingTokenError before any request
        register_secret(token)
        self._token = token or ""
        self._token_q = quote(self._token, safe="")

        rate = config.max_requests_per_second
        if self._google:
            per_s = config.tiles_per_minute / 60.0
            rate = min(rate, per_s) if rate else per_s
        self._limiter = RateLimiter(rate) if rate else None
        self._timeout = (config.connect_timeout_s, config.read_timeout_s)
        self._placeholders = frozenset(h.strip().lower() for h in config.placeholder_sha256)
        self._session = self._make_session()
        self._executor = ThreadPoolExecutor(max_workers=config.max_concurrency, thread_name_prefix=f"tiles-{name}")
        self._lock = threading.Lock()
        self._closed = False
        self._denied_logged = False
        self.requests = 0  # HTTP requests started here (urllib3's own retries not counted)
        self.fetched = 0
        self.missing = 0
        # Google Map Tiles state
        self._gsession: str | None = None
        self._gexpiry = 0.0
        self._glock = threading.Lock()
        self._quota_used = 0
        self._quota_since = time.time()

    # -- plumbing
    def _make_session(self) -> requests.Session:
        session = requests.Session()
        n = self.config.max_concurrency
        adapter = HTTPAdapter(pool_connections=n, pool_maxsize=n, max_retries=build_retry(self.config, self._limiter))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = USER_AGENT
        for key, value in self.config.headers.items():
            session.headers[key] = value.replace("{token}", self._token)
        return session

    def __repr__(self) -> str:
        return f"HttpTileSource(name={self.name!r}, url={redact(self._template)!r})"

    def __reduce__(self):
        # Pickle the name and config only: the token is read again from the environment where it is unpickled.
        return (HttpTileSource, (self.name, self.config))

    def __enter__(self) -> HttpTileSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._session.close()

    def _redact(self, text: object) -> str:
        return redact(text, (self._token, self._token_q))

    def tile_url(self, z: int, x: int, y: int, session: str | None = None) -> str:
        values = {"z": str(z), "x": str(x), "y": str(y), "token": self._token_q}
        if "{quadkey}" in self._template:
            values["quadkey"] = quadkey(z, x, y)
        if self._subdomains:
            values["s"] = self._subdomains[(x + y) % len(self._subdomains)]
        if self._google:
            values["session"] = quote(session or "", safe="")
        return fill_template(self._template, values)

    def _denied(self, status: int) -> str:
        env = self.config.token_env
        if env:
            return (
                f"access denied (HTTP {status}): check the token in the environment variable {env} "
                "(valid, not expired, allowed for this tile set)"
            )
        return (
            f"access denied (HTTP {status}): the server wants credentials; set token_env to the name of the "
            "environment variable that holds the token"
        )

    # -- Google Map Tiles session and quota
    def _create_google_session(self) -> None:
        cfg = self.config
        sep = "&" if "?" in cfg.session_url else "?"
        url = f"{cfg.session_url}{sep}key={self._token_q}"
        payload = {"mapType": cfg.map_type, "language": cfg.language, "region": cfg.region}
        env = cfg.token_env
        try:
            resp = self._session.post(url, json=payload, timeout=self._timeout)
        except requests.RequestException as e:
            raise HttpSourceError(
                f"source {self.name!r}: Google Map Tiles createSession failed: {self._redact(e)}"
            ) from None
        with resp:
            if resp.status_code in (401, 403):
                raise HttpSourceError(
                    f"source {self.name!r}: Google Map Tiles createSession was refused "
                    f"(HTTP {resp.status_code}): check the API key in the environment variable {env} "
                    "(valid, with the Map Tiles API enabled and billing set up for its project)"
                )
            if resp.status_code != 200:
                raise HttpSourceError(
                    f"source {self.name!r}: Google Map Tiles createSession failed (HTTP {resp.status_code}): "
                    f"{self._redact(resp.text[:300])}"
                )
            try:
                data = resp.json()
                session = str(data["session"])
                expiry = float(data.get("expiry", time.time() + 3600))
            except (ValueError, KeyError, TypeError):
                raise HttpSourceError(
                    f"source {self.name!r}: Google Map Tiles createSession answered without a session: "
                    f"{self._redact(resp.text[:300])}"
                ) from None
        self._gsession, self._gexpiry = session, expiry
        log.info("source %s: Google Map Tiles session created (expires %s)", self.name, time.ctime(expiry))

    def _google_session(self) -> str:
        with self._glock:
            now = time.time()
            if self._gsession is not None:
                lifetime_margin = _SESSION_RENEW_MARGIN_S if self._gexpiry - now > 2 * _SESSION_RENEW_MARGIN_S else 0
                if now < self._gexpiry - lifetime_margin:
                    return self._gsession
                log.info("source %s: Google Map Tiles session expired; renewing", self.name)
            self._create_google_session()
            assert self._gsession is not None
            return self._gsession

    def _take_quota(self) -> bool:
        with self._lock:
            now = time.time()
            if now - self._quota_since >= _DAY_S:
                self._quota_since, self._quota_used = now, 0
            if self._quota_used >= self.config.tiles_per_day:
                return False
            self._quota_used += 1
            return True

    # -- fetching
    def get_tiles(self, keys: Iterable[TileKey]) -> dict[TileKey, TileResult]:
        return {k: r for k, (_, r) in self.fetch_bodies(keys).items()}

    def fetch_bodies(self, keys: Iterable[TileKey]) -> dict[TileKey, tuple[bytes | None, TileResult]]:
        """Per tile, the raw body when it is valid imagery (for the cache) and its TileResult."""
        if self._closed:
            raise RuntimeError(f"source {self.name!r} is closed")
        keys = list(dict.fromkeys(tuple(int(v) for v in k) for k in keys))
        if not keys:
            return {}
        if self._google:
            self._google_session()  # a refused key fails the batch here, with a clear error
        futures = {k: self._executor.submit(self._fetch_one_safe, k) for k in keys}
        out = {k: f.result() for k, f in futures.items()}
        missing = [r.missing for _, r in out.values() if not r.ok]
        with self._lock:
            self.fetched += len(keys) - len(missing)
            self.missing += len(missing)
        if missing:
            counts: dict[str, int] = {}
            for m in missing:
                counts[m] = counts.get(m, 0) + 1
            top = "; ".join(f"{n}× {m}" for m, n in sorted(counts.items(), key=lambda kv: -kv[1])[:4])
            log.info("source %s: %d of %d tiles missing (%s)", self.name, len(missing), len(keys), top)
        return out

    def _fetch_one_safe(self, key: TileKey) -> tuple[bytes | None, TileResult]:
        try:
            return self._fetch_one(key)
        except HttpSourceError as e:
            return None, TileResult.absent(self._redact(e))
        except Exception as e:  # never let one tile break the batch
            reason = self._redact(f"{type(e).__name__}: {e}")
            log.warning("source %s: tile %s failed unexpectedly: %s", self.name, key, reason)
            return None, TileResult.absent(f"error: {reason}")

    def _fetch_one(self, key: TileKey) -> tuple[bytes | None, TileResult]:
        z, x, y = key
        cfg = self.config
        if self._google:
            if not self._take_quota():
                return None, TileResult.absent(f"daily quota of {cfg.tiles_per_day} tiles reached")
            url = self.tile_url(z, x, y, self._google_session())
        else:
            url = self.tile_url(z, x, y)
        budget = cfg.retry.total + 1  # attempts in all, urllib3's retries included
        attempts = 0
        last_error = ""
        while attempts < budget:
            if self._limiter is not None:
                self._limiter.acquire()
            with self._lock:
                self.requests += 1
            try:
                resp = self._session.get(url, timeout=self._timeout, stream=True)
            except requests.exceptions.ConnectTimeout:
                # urllib3 gave up after its own retries (each call starts a fresh Retry of `budget` attempts)
                return None, TileResult.absent(f"connection timed out after {attempts + budget} attempts")
            except requests.exceptions.ReadTimeout:
                return None, TileResult.absent(f"read timed out after {attempts + 1} attempts")
            except requests.exceptions.ConnectionError as e:
                return None, TileResult.absent(self._describe_exhausted(e, attempts + budget))
            except requests.RequestException as e:
                return None, TileResult.absent(f"request failed: {self._redact(e)}")
            history = getattr(getattr(resp.raw, "retries", None), "history", ()) or ()
            attempts += len(history) + 1
            try:
                body = resp.content  # stream=True: body errors surface here, not in urllib3's retry loop
            except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
                last_error = self._describe_body_error(e)
                log.debug("source %s: tile %d/%d/%d: %s (attempt %d)", self.name, z, x, y, last_error, attempts)
                if attempts < budget:
                    self._backoff(attempts)
                continue
            except requests.RequestException as e:
                return None, TileResult.absent(f"body read failed: {self._redact(e)}")
            finally:
                resp.close()
            return self._classify(key, resp.status_code, body, attempts)
        return None, TileResult.absent(f"{last_error} after {attempts} attempts")

    def _classify(self, key: TileKey, status: int, body: bytes, attempts: int) -> tuple[bytes | None, TileResult]:
        cfg = self.config
        if 200 <= status < 300 and status != 204:
            result = body_to_result(body, self._placeholders, cfg.blank_tile_is_missing)
            return (body if result.ok else None), result
        if status in (204, 404):
            return None, TileResult.absent(f"not found (HTTP {status})")
        if status in (401, 403):
            reason = self._denied(status)
            if not self._denied_logged:
                self._denied_logged = True
                log.warning("source %s: %s", self.name, reason)
            return None, TileResult.absent(reason)
        if status in cfg.retry.status_forcelist or status == 429:
            return None, TileResult.absent(f"HTTP {status} after {attempts} attempts")
        return None, TileResult.absent(f"HTTP {status}")

    def _backoff(self, attempts: int) -> None:
        rc = self.config.retry
        delay = min(rc.backoff_max_s, rc.backoff_factor * (2 ** (attempts - 1)))
        if delay > 0:
            time.sleep(delay)

    def _describe_exhausted(self, e: requests.exceptions.ConnectionError, n: int) -> str:
        reason = e.args[0] if e.args else e
        inner = getattr(reason, "reason", reason)
        name = type(inner).__name__
        if "ReadTimeout" in name:
            return f"read timed out after {n} attempts"
        if "ConnectTimeout" in name:
            return f"connection timed out after {n} attempts"
        if "NewConnectionError" in name or "NameResolution" in name:
            return f"could not connect after {n} attempts: {self._short(inner)}"
        if "ProtocolError" in name or "RemoteDisconnected" in str(inner):
            return f"connection dropped after {n} attempts"
        return f"connection failed after {n} attempts: {self._short(inner)}"

    def _describe_body_error(self, e: Exception) -> str:
        text = str(e)
        if "timed out" in text.lower() or "ReadTimeout" in text:
            return "read timed out during the body"
        if "IncompleteRead" in text or "ProtocolError" in type(e).__name__ or "Connection broken" in text:
            return "connection dropped during the body"
        return f"body read failed ({self._short(e)})"

    def _short(self, e: object) -> str:
        text = self._redact(e)
        # urllib3 messages repeat the pool and URL; keep the cause, which is what a user can act on.
        m = re.search(r"\(Caused by (.*)\)$", text)
        return (m.group(1) if m else text)[:200]
