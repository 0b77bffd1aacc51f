"""Listening on a TCP address (the commons server, the DICOM gateway), with what to do when
it cannot be done: a port in use, a host that is no address of this machine, a port that needs
privileges. Plain sockets: no server framework here."""

from __future__ import annotations

import errno
import socket

from radcommons.errors import UserError


def listen_error(host: str, port: int, error: OSError) -> UserError:
    """The :class:`UserError` for ``error``, raised binding ``host:port``."""
    where = f"cannot listen on {host}:{port}"
    if isinstance(error, socket.gaierror):
        return UserError(f"{where}: {host!r} is not an address or a name of this machine ({error.strerror})",
                         "give --host an address of this machine: 127.0.0.1 (this machine only) or 0.0.0.0 (all)")
    reason = error.strerror or str(error)
    if error.errno == errno.EADDRINUSE:
        return UserError(f"{where}: {reason}", "another program listens there: choose another --port, or stop it")
    if error.errno == errno.EADDRNOTAVAIL:
        return UserError(f"{where}: {reason}",
                         "give --host an address of this machine: 127.0.0.1 (this machine only) or 0.0.0.0 (all)")
    if error.errno in (errno.EACCES, errno.EPERM):
        return UserError(f"{where}: {reason}", "ports below 1024 need privileges: choose a port above 1024")
    return UserError(f"{where}: {reason}", "check --host and --port")


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (the first address the name resolves to), ready to
    listen; a :class:`UserError` that says what to do when that cannot be done."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, protocol)
    except OSError as error:
        raise listen_error(host, port, error) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise listen_error(host, port, error) from None
    return sock


__all__ = ["bound_socket", "listen_error"]
