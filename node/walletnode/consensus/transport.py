"""Peer connections on asyncio: sealed, length-prefixed frames (see wire.py).

Each node dials every peer and sends only on its own outbound connection; it receives on the
connections peers dial to it. A link queues frames while it (re)connects; frames queued for a
link that drops are discarded (Raft resends what matters). A connect or a send that makes no
progress within `timeout_s` (a partition, a replaced pod's old address) is abandoned and dialled
again with a fresh DNS lookup.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from . import wire
from .peer_cipher import InvalidMessage, PeerCipher

log = logging.getLogger(__name__)

HEAD = struct.Struct(">I")
MAX_FRAME = 96 << 20  # an AppendEntries carries at least one entry, and an entry can be ~8 MB


class FrameHandler(Protocol):
    def on_frame(self, peer: int, kind: wire.Kind, body: Any) -> None: ...

    def on_link_down(self, peer: int) -> None: ...


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class _Link:
    """The outbound connection to one peer and the frames waiting for it."""

    def __init__(self, transport: PeerTransport, peer: int, address: str) -> None:
        self.transport = transport
        self.peer = peer
        self.address = address
        self.frames: deque[bytes] = deque()
        self.queued = 0
        self.connected = False
        self.stopped = False
        self.error: str | None = None  # why the last attempt to reach the peer failed
        self.wake = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"raft-link-{peer}")

    def push(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.queued += len(frame)
        if self.queued >= self.transport.window_bytes:
            self.room.clear()
        self.wake.set()

    def _clear(self) -> None:
        self.frames.clear()
        self.queued = 0
        self.room.set()

    def stop(self) -> None:
        # A flag as well as the cancel: Python 3.11's wait_for can swallow a cancellation that
        # arrives as the connect completes, and the loop would then dial on for ever.
        self.stopped = True
        self.task.cancel()

    async def _run(self) -> None:
        transport = self.transport
        while not self.stopped:
            writer = None
            try:
                host, port = split_address(self.address)
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), transport.timeout_s)
                _tune(writer, transport.timeout_s)
                writer.write(transport.frame(wire.Kind.HELLO, wire.Hello(transport.node_id, transport.cluster)))
                self.connected = True
                self.error = None
                closed = asyncio.get_running_loop().create_task(reader.read(1))  # EOF: the peer hung up
                await self._pump(writer, closed)
            except (OSError, TimeoutError, ValueError) as exc:
                log.debug("raft link to %s (%s): %s", self.peer, self.address, exc)
                if not self.connected:
                    self.error = _why(self.address, exc)
            finally:
                if writer is not None:
                    writer.close()
                if self.connected:
                    self.connected = False
                    transport.handler.on_link_down(self.peer)
                self._clear()
            await asyncio.sleep(transport.retry_s)

    async def _pump(self, writer: asyncio.StreamWriter, closed: asyncio.Task[bytes]) -> None:
        try:
            while not closed.done():
                if not self.frames:
                    self.wake.clear()
                    waiter = asyncio.ensure_future(self.wake.wait())
                    await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    continue
                while self.frames:
                    frame = self.frames.popleft()
                    self.queued -= len(frame)
                    writer.write(frame)
                if self.queued < self.transport.window_bytes:
                    self.room.set()
                await asyncio.wait_for(writer.drain(), self.transport.timeout_s)
            raise ConnectionResetError("closed by the peer")
        finally:
            closed.cancel()


def _why(address: str, exc: BaseException) -> str:
    host = split_address(address)[0]
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {host}"
    if isinstance(exc, TimeoutError):
        return f"cannot connect to {address}: no answer"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {address}: connection refused"
    return f"cannot connect to {address}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)


def _tune(writer: asyncio.StreamWriter, timeout_s: float) -> None:
    """Abort the connection when sent data stays unacknowledged for timeout_s (a partition)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeout_s * 1000))


class PeerTransport:
    def __init__(
        self,
        node_id: int,
        cluster: str,
        secret: str,
        bind: str,
        handler: FrameHandler,
        timeout_s: float = 3.0,
        retry_s: float = 0.2,
        window_bytes: int = 8 << 20,
    ) -> None:
        self.node_id = node_id
        self.cluster = cluster
        self.cipher = PeerCipher(secret)
        self.bind = bind
        self.handler = handler
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.window_bytes = window_bytes
        self.links: dict[int, _Link] = {}
        self._server: asyncio.Server | None = None
        self._refused: set[str] = set()  # peers whose refusal was logged already

    async def start(self) -> None:
        host, port = split_address(self.bind)
        self._server = await asyncio.start_server(self._serve, host or None, port, reuse_address=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self.links.values():
            link.stop()
        if self.links:
            await asyncio.wait([link.task for link in self.links.values()], timeout=self.timeout_s)
        self.links.clear()

    # -- sending ----------------------------------------------------------------------------

    def frame(self, kind: wire.Kind, body: Any) -> bytes:
        sealed = self.cipher.seal(wire.encode(kind, body))
        return HEAD.pack(len(sealed)) + sealed

    def send(self, peer: int, address: str, kind: wire.Kind, body: Any) -> None:
        self.link(peer, address).push(self.frame(kind, body))

    def link(self, peer: int, address: str) -> _Link:
        link = self.links.get(peer)
        if link is None:
            link = self.links[peer] = _Link(self, peer, address)
        link.address = address
        return link

    def errors(self) -> dict[int, str]:
        """Per peer that cannot be reached now, why (unresolvable name, no answer, refused)."""
        return {peer: link.error for peer, link in self.links.items() if link.error and not link.connected}

    def connected(self, peer: int) -> bool:
        link = self.links.get(peer)
        return link is not None and link.connected

    def forget(self, keep: Callable[[int], bool]) -> None:
        """Close the links of peers that are no longer members."""
        for peer in [p for p in self.links if not keep(p)]:
            self.links.pop(peer).stop()

    # -- receiving --------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        where = str(writer.get_extra_info("peername"))
        try:
            kind, hello = await asyncio.wait_for(self._read(reader), self.timeout_s)
            if kind != wire.Kind.HELLO or hello.cluster != self.cluster:
                self._refuse(where, f"not a member of cluster {self.cluster!r}")
                return
            while True:
                kind, body = await self._read(reader)
                self.handler.on_frame(hello.node, kind, body)
        except InvalidMessage as exc:
            self._refuse(where, str(exc))
        except wire.WireVersionError as exc:
            self._refuse(where, f"{exc}; upgrade or downgrade so that members speak one version")
        except msgspec.DecodeError as exc:
            self._refuse(where, f"undecodable frame: {exc}")
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # The node is shutting down. Python 3.11's stream server logs a cancelled handler as
            # "Exception in callback"; a handler that ends quietly is not.
            pass
        finally:
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> tuple[wire.Kind, Any]:
        (length,) = HEAD.unpack(await reader.readexactly(HEAD.size))
        if length > MAX_FRAME:
            raise msgspec.DecodeError(f"frame of {length} bytes exceeds {MAX_FRAME}")
        return wire.decode(self.cipher.open(await reader.readexactly(length)))

    def _refuse(self, where: str, why: str) -> None:
        host = where.rsplit(",", 1)[0]
        if host not in self._refused:  # once per address: a misconfigured peer retries forever
            self._refused.add(host)
            log.warning("refused a raft peer connection from %s: %s", where, why)
