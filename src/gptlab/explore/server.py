"""Serving the app: bind the port first (so a port in use is one clear line), then run uvicorn."""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys

from gptlab.errors import GptlabError
from gptlab.explore.guards import LoopbackHostOnly, header_timeout_protocol
from gptlab.explore.session import Explorer
from gptlab.optional import import_optional

MAX_CONNECTIONS = 64  # open connections at once: a page uses a few; more is a flood


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a GptlabError saying why not."""
    if not 0 <= port <= 65535:
        raise GptlabError(f"--port must be 0 to 65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise GptlabError(
                f"port {port} is in use (another server, or an explorer already running); "
                "pick another with --port"
            ) from None
        raise GptlabError(
            f"cannot listen on {host}:{port} ({exc.strerror}); check --host"
        ) from None
    return sock


def require_web_stack() -> None:
    """fastapi and uvicorn are the explore extra: say so before any model is loaded."""
    import_optional("fastapi", "explore")
    import_optional("uvicorn", "explore")


def serve(explorers: dict[str, Explorer], sock: socket.socket) -> None:
    """Serve on a socket from bind() until interrupted. Anything but a loopback address is
    announced as public."""
    host, port = sock.getsockname()[:2]
    if not is_loopback(host):
        print(
            f"gptlab: warning: --host {host} lets anyone who can reach this machine on the "
            "network use these models (and read the runs' metrics); use 127.0.0.1 unless you "
            "mean that",
            file=sys.stderr,
        )
    server = http_server(explorers, sock)
    shown = f"[{host}]" if ":" in host else host
    print(f"gptlab explore: serving {', '.join(explorers)} at http://{shown}:{port}")
    print("press Ctrl+C to stop", flush=True)
    server.run(sockets=[sock])


def http_server(explorers: dict[str, Explorer], sock: socket.socket):
    """The uvicorn server for the app, with the guards of gptlab.explore.guards in place; a
    loopback server answers only its own Host names."""
    import uvicorn

    from gptlab.explore.app import create_app

    app = create_app(explorers)
    host, port = sock.getsockname()[:2]
    if is_loopback(host):
        app = LoopbackHostOnly(app, port)
    return uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            http=header_timeout_protocol(),
            timeout_keep_alive=5,  # an idle connection between requests is closed after 5 s
            h11_max_incomplete_event_size=16 * 1024,  # a request head over 16 KiB: 400
            limit_concurrency=MAX_CONNECTIONS,  # beyond it uvicorn answers 503
        )
    )
