"""TLS for the gateway's faces: one certificate and key for HTTP/WebSocket and gRPC.

With ``gateway.tls`` on and no certificate of its own configured, the gateway takes a
development certificate from the local stack's CA (:mod:`cosmic.tls`), made on first
use and made again near its expiry or when the names change: clients verify it by that
CA (``<state_dir>/secrets/tls/ca.pem``). A studio's own certificate and key
(``gateway.tls_cert``, ``gateway.tls_key``) are used as they are.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from cosmic import tls
from cosmic.errors import ConfigError
from cosmic.settings import Settings


@dataclass(frozen=True)
class ServerCredentials:
    cert_file: Path  # PEM chain, the server's certificate first
    key_file: Path  # PEM key (the same file as cert_file for a development key store)
    ca: Path | None  # the CA that clients of a development certificate trust

    def ssl_context(self) -> ssl.SSLContext:
        """A server context for aiohttp (https, wss)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"gateway TLS: {self.cert_file}: {exc}") from None
        return context

    def grpc_pair(self) -> tuple[bytes, bytes]:
        """(private key, certificate chain) as grpc.ssl_server_credentials takes them."""
        key = _block(self.key_file.read_bytes(), b"PRIVATE KEY")
        chain = b"".join(_blocks(self.cert_file.read_bytes(), b"CERTIFICATE"))
        if not key or not chain:
            raise ConfigError(f"gateway TLS: no key or certificate in {self.key_file}, "
                              f"{self.cert_file}")
        return key, chain


def credentials(settings: Settings) -> ServerCredentials | None:
    """The faces' TLS key and certificate; None when TLS is off."""
    g = settings.gateway
    if not g.tls:
        return None
    if (g.tls_cert is None) != (g.tls_key is None):
        raise ConfigError("gateway.tls_cert and gateway.tls_key go together (or neither: "
                          "a development certificate from the stack's CA)")
    if g.tls_cert is not None and g.tls_key is not None:
        return ServerCredentials(g.tls_cert, g.tls_key, None)
    hosts = list(dict.fromkeys(["127.0.0.1", "localhost", g.host]))
    identity = tls.server_identity(settings.state_dir, "gateway", hosts)
    return ServerCredentials(identity.keystore, identity.keystore, identity.ca)


def _blocks(pem: bytes, kind: bytes) -> list[bytes]:
    """The PEM blocks of ``pem`` whose label ends with ``kind``, each with its armour."""
    found, at = [], 0
    while (start := pem.find(b"-----BEGIN ", at)) != -1:
        label_end = pem.find(b"-----", start + 11)
        end = pem.find(b"-----END ", label_end)
        stop = pem.find(b"-----", end + 9) + 5
        if label_end == -1 or end == -1 or stop < 5:
            break
        if pem[start + 11:label_end].endswith(kind):
            found.append(pem[start:stop] + b"\n")
        at = stop
    return found


def _block(pem: bytes, kind: bytes) -> bytes:
    blocks = _blocks(pem, kind)
    return blocks[0] if blocks else b""
