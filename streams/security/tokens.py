"""Bearer tokens: who a request comes from, proven by a signature the gateway checks.

The platform issues JWTs signed with EdDSA (Ed25519) and verifies them against
its key set (JWKS, by ``kid``). An external OpenID Connect provider's tokens
are accepted too when one is configured (its issuer, audience and key set);
HS256 with a shared secret exists for development only and is off unless
``security.allow_dev_hs256`` says otherwise.

What a token must be, or it is :class:`~.errors.Unauthenticated`:

- its header names one algorithm that is pinned to the key its ``kid`` names
  (``alg: none``, an HS256 token signed with a public key, an RS256 token for
  an EdDSA key: all refused before any signature is computed);
- no ``jku``, ``x5u``, ``x5c``, ``jwk`` or ``crit`` header: keys come from our
  configuration, never from the token; an unknown ``kid`` is refused;
- ``exp``, ``iat``, ``iss``, ``aud`` and ``sub`` present; ``iss``/``aud`` the
  configured ones; not expired, not issued (nor ``nbf``) in the future beyond
  the clock skew; ``exp - iat`` at most the configured lifetime;
- neither its player (``sub``) nor its id (``jti``) on the :class:`Denylist`.

Keys live under ``<state_dir>/secrets/`` (mode 0600), made on first use:
``token-signing.pem`` (the private key), ``token-jwks.json`` (the public key
set, which a deployment can extend with the next key before rotating).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from cosmic.settings import SecuritySettings, Settings
from schemas.models import Role

from .errors import KeyFileError, Unauthenticated

HS256_KID = "dev-hs256"
MAX_TOKEN_CHARS = 4096  # below gRPC's 8 KiB metadata limit, which refuses at random above it
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub")
# Header parameters that would let a token choose its own key: never honoured.
FORBIDDEN_HEADERS = ("jku", "x5u", "x5c", "jwk", "crit")
# Algorithms an external provider's key may be used with (never HMAC).
OIDC_ALGORITHMS = {"RSA": ("RS256", "PS256"), "EC": ("ES256",), "OKP": ("EdDSA",)}
MAX_SUB_CHARS = 200


# Files.

def secrets_dir(settings: Settings) -> Path:
    return settings.state_dir / "secrets"


def signing_key_file(settings: Settings) -> Path:
    s = settings.security
    return s.token_signing_key_file or secrets_dir(settings) / "token-signing.pem"


def jwks_file(settings: Settings) -> Path:
    s = settings.security
    return s.token_jwks_file or secrets_dir(settings) / "token-jwks.json"


def hs256_file(settings: Settings) -> Path:
    return secrets_dir(settings) / "token-hs256.key"


def _write_private(path: Path, data: bytes) -> bool:
    """Create ``path`` (mode 0600) holding ``data``; False if another process made it first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return True


def _read_private(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode & 0o077
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path} cannot be read: {exc}") from None
    if mode:
        raise KeyFileError(f"{path} is readable by others: chmod 600 it")
    return data


def public_jwk(key: Ed25519PublicKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(OKPAlgorithm.to_jwk(key))
    return {**jwk, "kid": kid, "alg": "EdDSA", "use": "sig"}


@dataclass(frozen=True)
class TokenKeys:
    """The platform's token keys: the one that signs, every one that verifies, the dev secret."""

    signing: Ed25519PrivateKey | None
    signing_kid: str
    public: Mapping[str, Ed25519PublicKey]
    hs256_secret: bytes | None = None

    @classmethod
    def generate(cls, with_hs256: bool = False) -> TokenKeys:
        key = Ed25519PrivateKey.generate()
        kid = f"ed-{secrets.token_hex(4)}"
        return cls(key, kid, {kid: key.public_key()},
                   secrets.token_bytes(32) if with_hs256 else None)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(k, kid) for kid, k in self.public.items()]}

    @classmethod
    def for_settings(cls, settings: Settings, *, create: bool = True) -> TokenKeys:
        """The platform's keys; the first caller on a fresh state folder creates them."""
        private, public = signing_key_file(settings), jwks_file(settings)
        if create and not private.exists():
            fresh = cls.generate()
            assert fresh.signing is not None
            pem = fresh.signing.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())
            # The kid travels in the PEM's first line, so the pair cannot disagree.
            if _write_private(private, f"# kid: {fresh.signing_kid}\n".encode() + pem):
                tmp = public.with_name(f".{public.name}.{os.getpid()}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(json.dumps(fresh.jwks(), indent=2))
                tmp.replace(public)
        if create and settings.security.allow_dev_hs256:
            _write_private(hs256_file(settings), secrets.token_bytes(32).hex().encode())
        return cls.load(settings)

    @classmethod
    def load(cls, settings: Settings) -> TokenKeys:
        private = signing_key_file(settings)
        signing: Ed25519PrivateKey | None = None
        kid = ""
        if private.exists():
            raw = _read_private(private)
            first, _, pem = raw.partition(b"\n")
            if not first.startswith(b"# kid: "):
                raise KeyFileError(f"{private}: the first line must be '# kid: <kid>'")
            kid = first.removeprefix(b"# kid: ").decode().strip()
            key = serialization.load_pem_private_key(pem, password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise KeyFileError(f"{private} does not hold an Ed25519 private key")
            signing = key
        public = load_jwks(jwks_file(settings)) if jwks_file(settings).exists() else {}
        okp = {k: v for k, v in public.items() if isinstance(v, Ed25519PublicKey)}
        if signing is not None:
            okp.setdefault(kid, signing.public_key())
        hs = hs256_file(settings)
        secret = (bytes.fromhex(_read_private(hs).decode().strip())
                  if settings.security.allow_dev_hs256 and hs.exists() else None)
        if not okp and secret is None:
            raise KeyFileError(f"no token keys at {private} or {jwks_file(settings)}")
        return cls(signing, kid, okp, secret)


def load_jwks(path: Path) -> dict[str, Any]:
    """kid -> public key of a JWKS file (keys without a kid, or for HMAC, are skipped)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"key set {path} cannot be read: {exc}") from None
    return jwks_keys(raw, str(path))


def jwks_keys(raw: Any, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in raw.get("keys", []) if isinstance(raw, dict) else []:
        if not isinstance(item, dict) or "kid" not in item or item.get("kty") == "oct":
            continue
        try:
            out[str(item["kid"])] = jwt.PyJWK(item).key
        except jwt.PyJWTError as exc:
            raise KeyFileError(f"key {item.get('kid')!r} in {where}: {exc}") from None
    return out


# Issuing.

def mint(keys: TokenKeys, security: SecuritySettings, player_id: str, role: Role = Role.PLAYER,
         *, ttl_s: float | None = None, algorithm: str = "EdDSA", jti: str | None = None,
         now: float | None = None, extra: Mapping[str, Any] | None = None) -> str:
    """A token for ``player_id`` acting as ``role``, valid for ``ttl_s`` (default: the limit)."""
    issued = int(time.time() if now is None else now)
    ttl = security.token_lifetime_s if ttl_s is None else ttl_s
    claims: dict[str, Any] = {
        "iss": security.token_issuer, "aud": security.token_audience, "sub": player_id,
        "role": role.value, "iat": issued, "nbf": issued, "exp": int(issued + ttl),
        "jti": jti or uuid.uuid4().hex, **(extra or {})}
    if algorithm == "HS256":
        if keys.hs256_secret is None:
            raise KeyFileError("HS256 tokens need security.allow_dev_hs256 (development only)")
        return jwt.encode(claims, keys.hs256_secret, algorithm="HS256",
                          headers={"kid": HS256_KID})
    if keys.signing is None:
        raise KeyFileError("this process has the public token keys only: it cannot issue tokens")
    return jwt.encode(claims, keys.signing, algorithm="EdDSA", headers={"kid": keys.signing_kid})


# Verifying.

@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token says the sender is."""

    player_id: str
    role: Role
    token_id: str
    issuer: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any
    algorithms: tuple[str, ...]
    issuer: str
    audience: str
    max_lifetime_s: float
    external: bool


@dataclass
class Denylist:
    """Banned players (until when; None: for good) and revoked token ids, as gateways see them."""

    players: dict[str, float | None] = field(default_factory=dict)
    tokens: dict[str, float | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Bumped on every change: sessions holding a verified identity recheck when it moves.
    version: int = 0

    def ban(self, player_id: str, until: float | None = None) -> None:
        with self.lock:
            self.players[player_id] = until
            self.version += 1

    def revoke(self, token_id: str, until: float | None = None) -> None:
        with self.lock:
            self.tokens[token_id] = until
            self.version += 1

    def lift(self, kind: str, subject: str) -> None:
        with self.lock:
            (self.players if kind == "player" else self.tokens).pop(subject, None)
            self.version += 1

    def check(self, player_id: str, token_id: str, now: float | None = None) -> None:
        t = time.time() if now is None else now
        for table, key, what in ((self.players, player_id, f"player {player_id!r} is banned"),
                                 (self.tokens, token_id, "the token was revoked")):
            if key in table:
                until = table[key]
                if until is None or until > t:
                    raise Unauthenticated(what)


class Verifier:
    """Checks tokens against the configured keys and the denylist; pure apart from its clock."""

    def __init__(self, security: SecuritySettings, keys: TokenKeys,
                 denylist: Denylist | None = None,
                 external_keys: Mapping[str, Any] | None = None) -> None:
        self.security = security
        self.denylist = denylist if denylist is not None else Denylist()
        own = security.token_issuer, security.token_audience, float(security.token_lifetime_s)
        self._keys: dict[str, _Key] = {}
        for kid, key in (external_keys or {}).items():
            algs = _oidc_algorithms(key)
            if algs and security.oidc_issuer:
                self._keys[kid] = _Key(key, algs, security.oidc_issuer,
                                       security.oidc_audience or security.token_audience,
                                       float(security.oidc_token_lifetime_s), True)
        for kid, key in keys.public.items():  # ours win a kid both sets name
            self._keys[kid] = _Key(key, ("EdDSA",), *own, False)
        if security.allow_dev_hs256 and keys.hs256_secret is not None:
            self._keys[HS256_KID] = _Key(keys.hs256_secret, ("HS256",), *own, False)

    def kids(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, token: str | None, now: float | None = None) -> Identity:
        if not token:
            raise Unauthenticated("no token: send 'authorization: Bearer <token>'")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated(f"a token of {len(token)} characters; at most {MAX_TOKEN_CHARS}")
        header = _header(token)
        bad = [h for h in FORBIDDEN_HEADERS if h in header]
        if bad:
            raise Unauthenticated(f"token header {bad[0]!r} is not accepted: keys come from "
                                  "the gateway's configuration")
        kid = header.get("kid")
        alg = header.get("alg")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("the token names no key (kid)")
        entry = self._keys.get(kid)
        if entry is None:
            raise Unauthenticated(f"unknown key id {kid[:64]!r}")
        if alg not in entry.algorithms:
            raise Unauthenticated(f"algorithm {str(alg)[:16]!r} is not the one key {kid!r} "
                                  f"signs with ({', '.join(entry.algorithms)})")
        skew = self.security.clock_skew_s
        t = time.time() if now is None else now
        try:
            claims = _decode(token, entry, skew, t)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"token refused: {exc}") from None
        return self._identity(claims, entry, t)

    def _identity(self, claims: dict[str, Any], entry: _Key, now: float) -> Identity:
        sub, iat, exp = claims["sub"], claims["iat"], claims["exp"]
        if not isinstance(sub, str) or not 0 < len(sub) <= MAX_SUB_CHARS:
            raise Unauthenticated(f"sub must be a player id of 1..{MAX_SUB_CHARS} characters")
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            raise Unauthenticated("iat and exp must be numbers")
        if exp - iat > entry.max_lifetime_s:
            raise Unauthenticated(f"a token valid for {exp - iat:g}s; at most "
                                  f"{entry.max_lifetime_s:g}s")
        role_claim = self.security.oidc_role_claim if entry.external else "role"
        raw_role = claims.get(role_claim, Role.PLAYER.value) if role_claim else Role.PLAYER.value
        try:
            role = Role(raw_role)
        except ValueError:
            raise Unauthenticated(f"unknown role {str(raw_role)[:32]!r}") from None
        jti = claims.get("jti")
        token_id = jti if isinstance(jti, str) else ""
        player = f"{entry.issuer}|{sub}" if entry.external else sub
        self.denylist.check(player, token_id, now)
        return Identity(player, role, token_id, entry.issuer, float(exp))


def _header(token: str) -> dict[str, Any]:
    """The JOSE header, read without trusting it (only to choose the pinned key)."""
    head, dot, _ = token.partition(".")
    try:
        if not dot:
            raise ValueError("no header segment")
        header = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise Unauthenticated(f"not a token: {exc}") from None
    if not isinstance(header, dict):
        raise Unauthenticated("not a token: the header is not an object")
    return header


def _decode(token: str, entry: _Key, skew: float, now: float) -> dict[str, Any]:
    """Signature, issuer, audience and presence by PyJWT; the times here, on ``now``."""
    claims: dict[str, Any] = jwt.decode(
        token, entry.key, algorithms=list(entry.algorithms), audience=entry.audience,
        issuer=entry.issuer,
        options={"require": list(REQUIRED_CLAIMS), "verify_exp": False,
                 "verify_nbf": False, "verify_iat": False})
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise jwt.InvalidTokenError(f"{name} must be a number")
    if claims["exp"] <= now - skew:
        raise jwt.ExpiredSignatureError("Signature has expired")
    for name in ("iat", "nbf"):
        if name in claims and claims[name] > now + skew:
            raise jwt.ImmatureSignatureError(f"The token is not yet valid ({name})")
    return claims


def _oidc_algorithms(key: Any) -> tuple[str, ...]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return OIDC_ALGORITHMS["RSA"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        return OIDC_ALGORITHMS["EC"] if key.curve.name == "secp256r1" else ()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return OIDC_ALGORITHMS["OKP"]
    return ()


def external_keys(settings: Settings) -> dict[str, Any]:
    """The configured OpenID Connect provider's keys (a file, or fetched from its URL)."""
    s = settings.security
    if not s.oidc_issuer:
        return {}
    if s.oidc_jwks_file is not None:
        return load_jwks(s.oidc_jwks_file)
    if s.oidc_jwks_url:
        return fetch_jwks(s.oidc_jwks_url)
    raise KeyFileError("security.oidc_issuer is set but neither oidc_jwks_file nor oidc_jwks_url")


def fetch_jwks(url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    import urllib.request

    if not url.startswith(("https://", "http://127.0.0.1", "http://localhost", "http://[::1]")):
        raise KeyFileError(f"a key set URL must be https (or loopback): {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            raw = json.loads(resp.read(1 << 20))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"key set {url} cannot be fetched: {exc}") from None
    return jwks_keys(raw, url)


def verifier_for_settings(settings: Settings, denylist: Denylist | None = None) -> Verifier:
    """The verifier a gateway runs: the platform's keys (made if missing) and the provider's."""
    return Verifier(settings.security, TokenKeys.for_settings(settings), denylist,
                    external_keys(settings))
