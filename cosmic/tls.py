"""Development TLS for the local stack: a certificate authority of its own, and the server
certificates it signs (the broker's SASL_SSL listener).

Everything lives under ``<state_dir>/secrets/tls`` (folder 0700): ``ca.pem`` (the
authority's certificate: what clients trust, e.g. librdkafka's ``ssl.ca.location``),
``ca-key.pem`` (its private key, 0600) and ``<name>.pem`` per server (its private key,
then its certificate and the authority's: the PEM key store Kafka reads; 0600). The
keys are unencrypted PKCS#8, protected by their files' mode like the stack's passwords:
Kafka 4.1's PEM key store cannot decrypt a PBES2 key ("PBES2 SecretKeyFactory not
available"), and the PBES1 schemes it can are obsolete ciphers. Made the first
time a service is prepared; a server certificate is issued again when it no longer names
the service's hosts, is not the current authority's, or has under a month left.

It is a development authority: trust it only on the machine that made it. A real
deployment gives the broker a certificate from its own PKI and points clients at that
CA with ``COSMIC_KAFKA__SSL_CA_LOCATION``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 397
RENEW_BEFORE = dt.timedelta(days=30)


def folder(state_dir: Path) -> Path:
    return state_dir / "secrets" / "tls"


def ca_path(state_dir: Path) -> Path:
    """The development authority's certificate (what a client trusts)."""
    return folder(state_dir) / "ca.pem"


@dataclass(frozen=True)
class ServerIdentity:
    """What a TLS server is configured with: its PEM key store, and the CA that signed it."""

    keystore: Path  # PKCS#8 private key, then the certificate chain
    ca: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    # Readable by its owner only from the first byte (a key), or by all (a certificate);
    # written beside and renamed, so a reader never sees half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)
    tmp.replace(path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _authority(state_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    where = folder(state_dir)
    where.mkdir(parents=True, exist_ok=True)
    for f in (where, where.parent):
        os.chmod(f, 0o700)
    cert_file, key_file = ca_path(state_dir), where / "ca-key.pem"
    if cert_file.exists() and key_file.exists():
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        if isinstance(key, ec.EllipticCurvePrivateKey) and cert.not_valid_after_utc > _now():
            return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cosmic Garden"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Cosmic Garden development CA")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write(key_file, key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), 0o600)
    _write(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def _current(keystore: Path, ca: x509.Certificate, hosts: list[str]) -> bool:
    """Whether the key store holds a certificate of ``ca`` for ``hosts``, not about to end."""
    try:
        data = keystore.read_bytes()
        cert = x509.load_pem_x509_certificates(data)[0]
        serialization.load_pem_private_key(data, None)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, IndexError, x509.ExtensionNotFound):
        return False
    return (cert.issuer == ca.subject and set(names) == set(_names(hosts))
            and cert.not_valid_after_utc - _now() > RENEW_BEFORE)


def server_identity(state_dir: Path, name: str, hosts: list[str]) -> ServerIdentity:
    """``name``'s key store (made, or made again, as the module says) for ``hosts``."""
    ca, ca_key = _authority(state_dir)
    keystore = folder(state_dir) / f"{name}.pem"
    if _current(keystore, ca, hosts):
        return ServerIdentity(keystore, ca_path(state_dir))
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, ca))
    _write(keystore, pem + chain, 0o600)
    return ServerIdentity(keystore, ca_path(state_dir))
