"""The configs of the tile sources reached over HTTP (XYZ templates, Google Map Tiles), registered as source
kinds "xyz" and "google_tiles".

They live apart from mapper.imagery.http so that validating a config stays light: the HTTP source (requests,
the PNG decoder) is imported only when a source is opened.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mapper.config.models import MissingTokenError, SourceConfig, StrictModel, register_source


class RetryConfig(StrictModel):
    """urllib3 Retry settings for tile requests."""

    total: int = Field(4, ge=0, le=20)
    backoff_factor: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, gt=0)
    status_forcelist: list[int] = Field(default_factory=lambda: [429, 500, 502, 503, 504])
    respect_retry_after: bool = True


class HttpSourceConfig(SourceConfig):
    """Settings shared by every tile source reached over HTTP."""

    attribution: str = ""
    token_env: str | None = Field(
        None, description="Name of the environment variable that holds the access token (never the token)."
    )
    headers: dict[str, str] = Field(default_factory=dict)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(20.0, gt=0)
    max_concurrency: int = Field(8, ge=1, le=256)
    max_requests_per_second: float | None = Field(None, gt=0)
    retry: RetryConfig = RetryConfig()
    placeholder_sha256: list[str] = Field(
        [], description="sha256 of bodies the server returns instead of imagery ('no imagery' tiles)."
    )
    blank_tile_is_missing: bool = Field(
        True, description="Treat a tile of one uniform colour as a 'no imagery' placeholder."
    )
    max_zoom: int = Field(19, ge=0, le=24)

    @property
    def remote(self) -> bool:
        return True

    def token(self) -> str | None:
        """The token from the environment; fails, naming the variable, when it is unset."""
        if self.token_env is None:
            return None
        value = os.environ.get(self.token_env, "").strip()
        if not value:
            raise MissingTokenError(self.token_env)
        return value

    def open(self, name: str, config):
        from mapper.imagery.http import open_http_source  # only now: it brings requests and the PNG decoder

        return open_http_source(name, self)


@register_source
class XYZSourceConfig(HttpSourceConfig):
    kind: Literal["xyz"] = "xyz"
    url: str = Field(description="Template with {z}/{x}/{y} or {quadkey}; {s} for subdomains; {token}.")
    subdomains: list[str] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _has_tile_placeholders(cls, url: str) -> str:
        if "{quadkey}" not in url and not all(p in url for p in ("{z}", "{x}", "{y}")):
            raise ValueError(
                f"URL template {url!r} must contain {{z}}, {{x}} and {{y}} (or {{quadkey}}), "
                "e.g. https://example.com/tiles/{z}/{x}/{y}.jpg"
            )
        return url

    @model_validator(mode="after")
    def _subdomains_used(self):
        if "{s}" in self.url and not self.subdomains:
            raise ValueError("URL template uses {s} but no subdomains are configured")
        return self


@register_source
class GoogleTilesConfig(HttpSourceConfig):
    """Google Map Tiles API (2D satellite): an API key plus a session token from createSession."""

    kind: Literal["google_tiles"] = "google_tiles"
    token_env: str | None = "GOOGLE_MAPS_API_KEY"
    session_url: str = "https://tile.googleapis.com/v1/createSession"
    tile_url: str = "https://tile.googleapis.com/v1/2dtiles/{z}/{x}/{y}?session={session}&key={token}"
    map_type: Literal["satellite"] = "satellite"
    language: str = "en-US"
    region: str = "US"
    tiles_per_minute: int = Field(6000, ge=1, description="Per-minute quota of the project's API key.")
    tiles_per_day: int = Field(100000, ge=1, description="Daily tile quota; the source stops at it.")
