"""Tile servers for the benchmarks, run as child processes: `python -m benchmarks.servers static DIR` serves
pre-rendered `{z}/{x}/{y}.png` files from memory; `python -m benchmarks.servers world SEED RENDERING` serves the
simulated world, rendering every request. Both bind 127.0.0.1 on a free port, print their URL template (with
`{z}/{x}/{y}`) on the first line and exit when stdin closes.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def static_server(root: Path) -> ThreadingHTTPServer:
    """HTTP/1.1 keep-alive server of every file under `root`, loaded into memory first (no disk in the loop)."""
    files = {"/" + p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = files.get(self.path.split("?", 1)[0])
            status, ctype = (200, "image/png") if body is not None else (404, "text/plain")
            body = body if body is not None else b"not found"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    return httpd


def main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "static":
        root = Path(argv[1])
        httpd = static_server(root)
        template = f"http://127.0.0.1:{httpd.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        print(template, flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        httpd.shutdown()
    elif kind == "world":
        from mapper.world.server import WorldServer

        seed, rendering = int(argv[1]), argv[2]
        with WorldServer(seed) as server:
            print(server.url_template(rendering), flush=True)
            sys.stdin.read()
    else:
        raise SystemExit(f"unknown server kind {kind!r}; use 'static DIR' or 'world SEED RENDERING'")


if __name__ == "__main__":
    main(sys.argv[1:])
