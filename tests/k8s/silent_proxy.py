"""A TCP proxy whose open connections can be made to go silent, as when a load balancer or a NAT
forgets a flow: nothing is closed or reset, the bytes simply stop arriving. New connections work."""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class SilentProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._epoch = 0  # connections accepted in an earlier epoch are silent
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def silence(self) -> None:
        """Every connection open now stops carrying bytes, in both directions, and is never closed."""
        self._epoch += 1

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.upstream)
            except OSError:  # closed
                return
            self._sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst, self._epoch), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, epoch: int) -> None:
        try:
            while data := src.recv(65536):
                if epoch == self._epoch:
                    dst.sendall(data)
        except OSError:
            pass
        if epoch == self._epoch:  # a silent flow does not pass on the close either
            for sock in (src, dst):
                sock.close()

    def close(self) -> None:
        self.listener.close()
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> SilentProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
