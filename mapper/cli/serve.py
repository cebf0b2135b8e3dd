"""`mapper serve RUN_DIR`: a run or a label campaign on a map in the browser (local, read-only)."""

from __future__ import annotations

import errno
from pathlib import Path

import click


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="The port to listen on (0: any free one, printed).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; the default is this machine only (the app has no login).")
def serve(directory: Path, port: int, host: str) -> None:  # fmt: skip
    """Show a run (or a label campaign) on a map: imagery, cropland, the block grid and an inspector.

    DIRECTORY is a `mapper run --out` directory (it may still be running: shown as it stands) or a
    `mapper al init` campaign (each round's blocks and the labeller's polygons). Read-only: nothing in it
    is written, and nothing outside it can be requested. Stop with Ctrl-C.
    """
    from werkzeug.serving import make_server

    from mapper.serve.app import create_app
    from mapper.serve.campaignview import CampaignView, is_campaign
    from mapper.serve.runview import RunView

    view = CampaignView(directory) if is_campaign(Path(directory)) else RunView(directory)  # ServeError: exit 2
    import logging

    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per tile only with -v
    _check_port(host, port)  # werkzeug would print its own advice and exit; ours names the option
    server = make_server(host, port, create_app(view), threaded=True)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    click.echo(f"serving the {view.kind} {view.root} at http://{shown}:{server.server_port}/ (Ctrl-C stops)",
               err=True)  # fmt: skip
    if host not in ("127.0.0.1", "::1", "localhost"):
        click.echo(f"warning: listening on {host}: anyone who reaches this address can see the {view.kind}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _check_port(host: str, port: int) -> None:
    """Refuse a port another program holds (bound as the server binds it, then released)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise click.ClickException(f"--host {host}: {e.strerror}; give an address of this machine") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise click.ClickException(f"port {port} on {host} is in use; choose another with --port") from None
            raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
