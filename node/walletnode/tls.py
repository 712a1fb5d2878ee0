"""TLS contexts: the node's server context that follows its certificate files, and the clients'.

Rotation fails no request: the server keeps one live `SSLContext` and loads a renewed chain into
it when the files change (Kubernetes swaps a mounted Secret's files at once). Connections already
open keep their session; new handshakes get the new certificate. A half-written pair (key and
certificate that do not match yet) is refused by OpenSSL and the old chain stays until the next look.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl

log = logging.getLogger(__name__)


def client_context(ca_file: str | None, ca_data: bytes | None = None) -> ssl.SSLContext:
    """Verify servers against `ca_file` or `ca_data` (PEM bundles), or the system's trust store
    without either."""
    return ssl.create_default_context(cafile=ca_file, cadata=ca_data.decode() if ca_data else None)


class ServerCertificate:
    """A TLS server context whose chain is reloaded from `cert_file`/`key_file` when they change."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._fingerprint = b""
        if not self.reload():
            raise ValueError(f"cannot load the TLS certificate {cert_file} with key {key_file}")

    def _read_fingerprint(self) -> bytes:
        digest = hashlib.sha256()
        for path in (self.cert_file, self.key_file):
            with open(path, "rb") as f:
                digest.update(f.read())
        return digest.digest()

    def reload(self) -> bool:
        """Load the files if they changed since the last load; False if they cannot be loaded now."""
        try:
            fingerprint = self._read_fingerprint()
            if fingerprint == self._fingerprint:
                return True
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            log.warning("TLS certificate not (re)loaded, keeping the current one: %s", exc)
            return False
        if self._fingerprint:
            log.info("loaded the renewed TLS certificate from %s", self.cert_file)
        self._fingerprint = fingerprint
        return True

    async def follow(self, interval_s: float = 2.0) -> None:
        """Reload whenever the files change, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.reload()
