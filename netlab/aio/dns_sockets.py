"""Binding a DNS server's UDP socket and TCP listener on one address and one port.

Strategy: DNS uses the same port number over UDP and TCP (RFC 1035 section 4.2), so for port 0
the UDP socket is bound first on any free port and the TCP listener then on that same number,
trying again a few times if TCP finds it taken.  ``reuse_port`` sets SO_REUSEPORT on both, so
several processes can share the port and the kernel spreads queries between them.
"""

from __future__ import annotations

import errno
import logging
import socket as _stdsocket

import trio

from netlab.aio.endpoint import UdpEndpoint, open_udp_endpoint

__all__ = ["bind_dns"]

log = logging.getLogger(__name__)

BIND_ATTEMPTS = 20
TCP_BACKLOG = 128
#: A burst of queries should wait in the kernel, not be dropped by it.
UDP_RCVBUF = 1 << 21  # bytes (the kernel may cap it at net.core.rmem_max)


async def bind_dns(
    host: str, port: int, *, reuse_port: bool = False
) -> tuple[UdpEndpoint, trio.SocketListener]:
    """A UDP endpoint and a TCP listener on ``host:port`` (port 0: the same free port for both).

    Raises:
        OSError: the address cannot be bound (in use, not ours, or a privileged port).
    """
    for _ in range(BIND_ATTEMPTS):
        udp = await open_udp_endpoint(host, port, rcvbuf=UDP_RCVBUF, reuse_port=reuse_port)
        try:
            listener = await _open_tcp_listener(host, udp.local_address[1], reuse_port=reuse_port)
        except OSError as exc:
            await udp.aclose()
            if port == 0 and exc.errno == errno.EADDRINUSE:
                continue
            raise
        return udp, listener
    raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host}")


async def _open_tcp_listener(host: str, port: int, *, reuse_port: bool) -> trio.SocketListener:
    family = _stdsocket.AF_INET6 if ":" in host else _stdsocket.AF_INET
    sock = trio.socket.socket(family, _stdsocket.SOCK_STREAM)
    try:
        # Restarting must not wait out TIME_WAIT connections from the last run.
        sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEPORT, 1)
        await sock.bind((host, port))
        sock.listen(TCP_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)
