"""Horovod across hosts: where the driver's rendezvous server listens, and the address the workers reach it on.

Horovod's ``RendezvousServer.start()`` binds every interface (``('', port)``) with no authentication.
:class:`BoundRendezvousServer` binds one address: the driver's address on the route to the workers (the one they
connect to), ``127.0.0.1`` when every worker is on loopback, or ``$WORKBENCH_RENDEZVOUS_ADDR``. Its port is free
and random unless ``$WORKBENCH_RENDEZVOUS_PORT`` fixes it (for a firewall that opens one port).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from core.errors import ClusterError

log = logging.getLogger(__name__)

ADDR_ENV = "WORKBENCH_RENDEZVOUS_ADDR"
PORT_ENV = "WORKBENCH_RENDEZVOUS_PORT"


def worker_ip(address: str) -> str:
    """The IP (or host name) of a Dask address such as ``tcp://10.0.0.5:40331``."""
    host = urlparse(address).hostname
    if not host:
        raise ClusterError(f"cannot read a host from the worker address {address!r}; expected tcp://HOST:PORT")
    return host


def route_address(ip: str) -> str:
    """The driver's own address on the route to ``ip`` (``127.0.0.1`` for loopback peers)."""
    if ip.startswith("127.") or ip == "localhost":
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((ip, 9))  # UDP connect sends nothing; it only picks the route and local address
        return str(s.getsockname()[0])


def driver_address(worker_addresses: Sequence[str]) -> str:
    """The one address of the driver that every worker in ``worker_addresses`` reaches (see the module doc).

    Raises:
        ClusterError: the workers sit on networks the driver reaches through different addresses, and
            ``$WORKBENCH_RENDEZVOUS_ADDR`` does not say which one they can all reach.
    """
    if os.environ.get(ADDR_ENV):
        return os.environ[ADDR_ENV]
    by_address: dict[str, list[str]] = {}
    for addr in worker_addresses:
        by_address.setdefault(route_address(worker_ip(addr)), []).append(addr)
    if len(by_address) > 1:
        listing = "; ".join(f"{a} for {', '.join(w)}" for a, w in sorted(by_address.items()))
        raise ClusterError(
            f"the driver reaches the workers through different addresses ({listing}); the Horovod "
            f"rendezvous listens on one: set {ADDR_ENV} to a driver address every worker can reach"
        )
    return next(iter(by_address), "127.0.0.1")


def rendezvous_port() -> int:
    """``$WORKBENCH_RENDEZVOUS_PORT`` or 0 (a free port chosen by the system)."""
    value = os.environ.get(PORT_ENV, "0")
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port < 65536:
        raise ClusterError(f"{PORT_ENV}={value!r} is not a TCP port; set it to 1024..65535 or unset it")
    return port


def _server_class() -> type:
    from horovod.runner.http.http_server import RendezvousHandler, RendezvousHTTPServer, RendezvousServer
    from horovod.runner.util.threads import in_thread

    class BoundRendezvousServer(RendezvousServer):  # type: ignore[misc]
        """Horovod's rendezvous server on one address (its ``start()`` binds all interfaces)."""

        def start_on(self, address: str, port: int = 0) -> int:
            """Listen on ``address:port`` (port 0: a free one); returns the port."""
            try:
                self._httpd = RendezvousHTTPServer((address, port), RendezvousHandler, self._verbose)
            except OSError as exc:
                raise ClusterError(
                    f"the Horovod rendezvous cannot listen on {address}:{port} ({exc}); set "
                    f"{ADDR_ENV} to an address of this machine and {PORT_ENV} to a free port "
                    "(or unset it)"
                ) from exc
            self._listen_thread = in_thread(target=self._httpd.serve_forever)
            bound = int(self._httpd.server_address[1])
            log.info("Horovod rendezvous listening on %s:%d", address, bound)
            return bound

    return BoundRendezvousServer


def start_rendezvous(worker_addresses: Sequence[str]) -> tuple[Any, str, int]:
    """Start a rendezvous server bound to :func:`driver_address`; returns ``(server, address, port)``.

    Call ``server.init(plan)`` before the ranks start and ``server.stop()`` afterwards.
    """
    address = driver_address(worker_addresses)
    server = _server_class()()  # Horovod: gloo rendezvous of the job's ranks
    port = server.start_on(address, rendezvous_port())
    return server, address, port
