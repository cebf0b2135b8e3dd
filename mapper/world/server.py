"""`mapper demo serve`: the simulated world as an XYZ tile server on loopback.

GET /{rendering}/{z}/{x}/{y}.png with rendering `a` or `b` (also `demo-a`, `demo-b`). Tiles without imagery
answer 404, partly covered tiles are RGBA PNGs whose alpha marks the pixels without imagery — the same
encodings real providers use, so clients exercise their real code paths.
"""

from __future__ import annotations

import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mapper.imagery.decode import encode_png
from mapper.world.world import get_world

log = logging.getLogger(__name__)
ROUTE = re.compile(r"^/(?:demo-)?(a|b)/(\d+)/(\d+)/(\d+)\.png$")


def make_handler(seed: int):
    world = get_world(seed)

    class TileHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes; no 40 ms stall

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                return self._send(200, b"ok", "text/plain")
            m = ROUTE.match(path)
            if not m:
                return self._send(404, b"unknown path; use /a/{z}/{x}/{y}.png or /b/{z}/{x}/{y}.png", "text/plain")
            rendering, z, x, y = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
            tile = world.render_tile(x, y, rendering, z)
            if not tile.ok:
                return self._send(404, tile.missing.encode(), "text/plain")
            self._send(200, encode_png(tile.rgb, tile.valid), "image/png")

        def _send(self, status: int, body: bytes, ctype: str):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "public, max-age=86400")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            log.debug("%s " + fmt, self.address_string(), *args)

    return TileHandler


class WorldServer:
    """A background tile server; `with WorldServer(seed) as s: s.url_template('a')`."""

    def __init__(self, seed: int = 0, host: str = "127.0.0.1", port: int = 0):
        self.httpd = ThreadingHTTPServer((host, port), make_handler(seed))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url_template(self, rendering: str) -> str:
        host = self.httpd.server_address[0]
        return f"http://{host}:{self.port}/{rendering}/{{z}}/{{x}}/{{y}}.png"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
