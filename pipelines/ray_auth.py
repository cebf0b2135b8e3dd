"""Joining a Ray cluster that was started with `ray start`: token authentication, as Ray documents it.

Ray 2.5x+ turns on token authentication for a head started with `ray start --head` whenever a token exists on
that machine (~/.ray/auth_token, which any local `ray.init()` creates), and every process that talks to the
cluster — worker nodes, drivers — must then run with RAY_AUTH_MODE=token and the head's token. Ray itself
enables token mode automatically only for clusters it finds on its own (address "auto"), never for an explicit
--address, so without help `mapper run --address HEAD:PORT` retries for a minute and ends in "cannot join".

`prepare_cluster_auth` turns token mode on for this driver when a token is available (Ray looks for it in
RAY_AUTH_TOKEN, then the file RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token) and RAY_AUTH_MODE is unset —
token mode also joins clusters without authentication — and then asks the cluster's GCS once, so that a
missing or wrong token fails at once with what to set. The token itself is never logged or put in a message.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mapper.run.executor import ExecutorError

log = logging.getLogger(__name__)

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
DOCS = "https://docs.ray.io/en/latest/ray-security/token-auth.html"


def default_token_file() -> Path:
    return Path.home() / ".ray" / "auth_token"


def token_origin() -> str | None:
    """Where Ray will take this process's token from (a description, never the token), or None."""
    if os.environ.get(TOKEN_ENV, "").strip():
        return f"the {TOKEN_ENV} environment variable"
    path = os.environ.get(TOKEN_PATH_ENV)
    if path:
        return f"{TOKEN_PATH_ENV}={path}" if _readable_token(Path(path)) else None
    default = default_token_file()
    return str(default) if _readable_token(default) else None


def _readable_token(path: Path) -> bool:
    try:
        return bool(path.read_text(encoding="utf-8").strip())
    except OSError:
        return False


def prepare_cluster_auth(address: str) -> None:
    """Make this process able to join the cluster at `address`, or fail naming exactly what to set."""
    mode = os.environ.get(AUTH_MODE_ENV)
    origin = token_origin()
    if mode is None and origin is not None:
        _enable_token_mode()
        log.info("joining %s with token authentication (token from %s)", address, origin)
    problem = _auth_problem(address)
    if problem is None:
        return
    raise ExecutorError(_advice(address, os.environ.get(AUTH_MODE_ENV), origin))


def _enable_token_mode() -> None:
    """RAY_AUTH_MODE=token for this process (Ray reads the mode only from the environment), and Ray's cached
    config refreshed so that it applies to the connection made next."""
    from ray._raylet import Config

    os.environ[AUTH_MODE_ENV] = "token"
    Config.initialize("")


def _auth_problem(address: str) -> str | None:
    """The GCS's answer to one request: None when it accepts us (or when it cannot say: Ray then reports it),
    else Ray's authentication error."""
    if address in ("auto", "local") or "://" in address:
        return None
    try:
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:  # another Ray: leave it to ray.init
        return None
    try:
        GcsClient(address=address)
    except AuthenticationError as e:
        return str(e)
    except Exception:  # not an authentication problem: ray.init says what it is
        return None
    return None


def _advice(address: str, mode: str | None, origin: str | None) -> str:
    head = f"the Ray cluster at --address {address} refused this process's authentication: "
    if mode is not None and mode.lower() != "token":
        return head + (
            f"it uses token authentication, but {AUTH_MODE_ENV}={mode} here; unset it or set {AUTH_MODE_ENV}=token, "
            f"with the head's token in {TOKEN_ENV} or {TOKEN_PATH_ENV} (see {DOCS})"
        )
    if origin is None:
        return head + (
            f"it uses token authentication and no token was found here; copy the head's token to this machine "
            f"(print it on the head with `ray get-auth-token`) into {default_token_file()}, or point "
            f"{TOKEN_PATH_ENV} at a file holding it, or set {TOKEN_ENV} (see {DOCS})"
        )
    return head + (
        f"the token from {origin} is not the cluster's; use the head's token (`ray get-auth-token` on the head) "
        f"(see {DOCS})"
    )
