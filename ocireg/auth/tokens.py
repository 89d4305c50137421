"""The registry's bearer tokens: scopes, signing (ES256 or RS256) and verification.

Tokens follow the Docker registry token specification: a JWT whose `access`
claim lists what it grants, `[{"type": "repository", "name": "team/app",
"actions": ["pull", "push"]}]`, for one audience (the `service`), for a
short time. The signing key is read from the configuration, or generated
into the data directory on the first start. Tokens from an external issuer
are trusted when their signature checks against its public key (a PEM key
or certificate, or a JWKS file). Verification admits ES256 and RS256 only:
`alg: none` and HMAC algorithms are refused whatever the token says.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid as uuidlib
from collections.abc import Iterable

import attrs
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

#: The algorithms a token may be signed with; anything else is refused.
ALGORITHMS = ("ES256", "RS256")
#: A token longer than this is refused before it is parsed, and never issued.
MAX_TOKEN_LENGTH = 8192
#: Scopes one token request may ask for, over all its `scope` parameters.
MAX_SCOPES = 64
#: Seconds of clock difference tolerated between the issuer and ocireg.
LEEWAY = 10


class TokenError(ValueError):
    """A token that cannot be trusted; the message says why (never the token itself)."""


class TokenTooLarge(ValueError):
    """The token for what was granted would be longer than MAX_TOKEN_LENGTH."""


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names it."""


@attrs.frozen
class Access:
    """One entry of a scope: `actions` on the resource `type`:`name`."""

    type: str
    name: str
    actions: tuple[str, ...]

    def to_claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}

    def to_scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scope(scope: str) -> Access:
    """`repository:team/app:pull,push` as an Access; ValueError when malformed."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        raise ValueError(f"malformed scope {scope[:100]!r}")
    # `repository(plugin)` is a resource class that docker may add.
    kind = kind.split("(", 1)[0]
    return Access(kind, name, tuple(a for a in actions.split(",") if a))


def parse_scopes(values: Iterable[str], limit: int = MAX_SCOPES) -> tuple[Access, ...]:
    """Every scope of the `scope` parameters (each may hold several, space-separated).

    ValueError when there are more than `limit` in all: each costs a rule
    check and room in the token.
    """
    found: list[Access] = []
    for value in values:
        for scope in value.split():
            if len(found) == limit:
                raise ValueError(f"a token request may ask for at most {limit} scopes")
            found.append(parse_scope(scope))
    return tuple(found)


def _claims_access(claims: dict) -> tuple[Access, ...]:
    entries = claims.get("access", [])
    if not isinstance(entries, list):
        raise TokenError("the token's access claim is not a list")
    found = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise TokenError("the token's access claim is malformed")
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions", [])
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(actions, list):
            raise TokenError("the token's access claim is malformed")
        found.append(Access(kind, name, tuple(a for a in actions if isinstance(a, str))))
    return tuple(found)


def _algorithm_of(key) -> str:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyFileError("an EC token key must be on curve P-256 (ES256)")
        return "ES256"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        if key.key_size < 2048:
            raise KeyFileError("an RSA token key must have at least 2048 bits")
        return "RS256"
    raise KeyFileError("a token key must be an EC P-256 (ES256) or RSA (RS256) key")


def key_id(public_key) -> str:
    """A stable id for a public key: the libtrust-style fingerprint docker uses as `kid`."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(digest[i:i + 4] for i in range(0, 48, 4))


@attrs.frozen
class SigningKey:
    private_key: object = attrs.field(repr=False)
    algorithm: str
    kid: str

    @classmethod
    def from_pem(cls, pem: bytes, source: str = "token key") -> SigningKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as e:
            raise KeyFileError(f"{source} is not an unencrypted PEM private key: {e}") from None
        algorithm = _algorithm_of(key)
        return cls(key, algorithm, key_id(key.public_key()))

    @classmethod
    def generate(cls, algorithm: str) -> SigningKey:
        key: object
        if algorithm == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        else:
            raise KeyFileError(f"cannot generate a key for {algorithm!r}; use ES256 or RS256")
        return cls(key, algorithm, key_id(key.public_key()))  # type: ignore[attr-defined]

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_key(self):
        return self.private_key.public_key()  # type: ignore[attr-defined]


def load_or_generate_key(path: str, algorithm: str, generate: bool) -> SigningKey:
    """The key at `path`; when absent and `generate`, a new one written there (mode 0600).

    Blocking: call it in a thread.
    """
    try:
        with open(path, "rb") as f:
            return SigningKey.from_pem(f.read(), path)
    except FileNotFoundError:
        if not generate:
            raise KeyFileError(f"token key file {path} does not exist") from None
    except OSError as e:
        raise KeyFileError(f"cannot read token key file {path}: {e.strerror}") from None
    key = SigningKey.generate(algorithm)
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.to_pem())
        f.flush()
        os.fsync(f.fileno())
    # Two processes starting at once: the first link wins, the other reads it.
    try:
        os.link(temporary, path)
    except FileExistsError:
        os.unlink(temporary)
        with open(path, "rb") as f:
            return SigningKey.from_pem(f.read(), path)
    os.unlink(temporary)
    return key


def load_public_keys(path: str) -> tuple[tuple[str | None, object], ...]:
    """The keys of a PEM public key, a PEM certificate or a JWKS file: (kid or None, key).

    Blocking: call it in a thread.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise KeyFileError(f"cannot read trusted key file {path}: {e.strerror}") from None
    stripped = data.strip()
    try:
        if stripped.startswith(b"{"):
            keys = jwt.PyJWKSet.from_json(data.decode()).keys
            found = tuple((k.key_id, k.key) for k in keys)
        else:
            found = tuple((None, key) for key in _pem_public_keys(data))
    except (ValueError, TypeError, jwt.PyJWTError) as e:
        raise KeyFileError(f"trusted key file {path} holds no usable key: {e}") from None
    if not found:
        raise KeyFileError(f"trusted key file {path} holds no key")
    for _, key in found:
        _algorithm_of(key)
    return found


def _pem_public_keys(data: bytes) -> list:
    keys = []
    for block in data.split(b"-----END ")[:-1]:
        begin = block.rfind(b"-----BEGIN ")
        if begin < 0:
            continue
        kind = block[begin + 11:].split(b"-----", 1)[0]
        pem = block[begin:] + b"-----END " + kind + b"-----\n"
        if kind == b"CERTIFICATE":
            keys.append(x509.load_pem_x509_certificate(pem).public_key())
        elif kind == b"PUBLIC KEY":
            keys.append(serialization.load_pem_public_key(pem))
        else:
            raise ValueError(f"unexpected PEM block {kind.decode(errors='replace')!r}")
    return keys


@attrs.frozen
class IssuedToken:
    token: str = attrs.field(repr=False)
    expires_in: int
    issued_at: float
    granted: tuple[Access, ...]


@attrs.frozen
class VerifiedToken:
    """What a trusted token says: who (`subject`, "" for anonymous), from whom, granting what."""

    subject: str
    issuer: str
    access: tuple[Access, ...]

    def grants(self, kind: str, name: str, action: str) -> bool:
        return any(
            a.type == kind and a.name == name and (action in a.actions or "*" in a.actions)
            for a in self.access
        )


@attrs.frozen
class TokenIssuer:
    """Signs tokens for `audience` as `issuer`, valid for `ttl` seconds."""

    key: SigningKey
    issuer: str
    audience: str
    ttl: int

    def issue(self, subject: str, granted: tuple[Access, ...], now: float) -> IssuedToken:
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience,
            "iat": int(now),
            "nbf": int(now) - 1,
            "exp": int(now) + self.ttl,
            "jti": str(uuidlib.uuid4()),
            "access": [a.to_claim() for a in granted],
        }
        token = jwt.encode(
            claims, self.key.private_key, algorithm=self.key.algorithm,
            headers={"kid": self.key.kid},
        )
        if len(token) > MAX_TOKEN_LENGTH:
            # Verifiers (ours too) refuse it: better no token than one that fails later.
            raise TokenTooLarge(
                f"the token for these scopes would be longer than {MAX_TOKEN_LENGTH} bytes; "
                "ask for fewer scopes"
            )
        return IssuedToken(token, self.ttl, now, granted)


@attrs.frozen
class TrustedIssuer:
    """An issuer whose tokens ocireg accepts: its name and its public keys (kid or None, key)."""

    name: str
    keys: tuple[tuple[str | None, object], ...] = attrs.field(repr=False)


@attrs.frozen
class TokenVerifier:
    """Checks tokens meant for `audience` from any of `issuers`."""

    audience: str
    issuers: tuple[TrustedIssuer, ...]

    def verify(self, token: str, now: float) -> VerifiedToken:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("the token is too long")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenError("the token is not a well-formed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenError(f"tokens signed with {str(algorithm)[:20]!r} are not accepted")
        issuer = next((i for i in self.issuers if i.name == unverified.get("iss")), None)
        if issuer is None:
            raise TokenError("the token's issuer is not trusted")
        kid = header.get("kid")
        candidates = [key for k, key in issuer.keys if k is None or kid is None or k == kid]
        if not candidates:
            raise TokenError("the token's key is not trusted")
        for key in candidates:
            if _algorithm_of(key) != algorithm:
                continue
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    audience=self.audience,
                    issuer=issuer.name,
                    leeway=LEEWAY,
                    options={"require": ["exp", "iss", "aud"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise TokenError("the token has expired") from None
            except jwt.InvalidAudienceError:
                raise TokenError("the token is meant for another service") from None
            except jwt.ImmatureSignatureError:
                raise TokenError("the token is not valid yet") from None
            except (jwt.PyJWTError, ValueError, TypeError) as e:
                raise TokenError(f"the token is invalid: {type(e).__name__}") from None
            subject = claims.get("sub", "")
            if not isinstance(subject, str):
                raise TokenError("the token's subject is not a string")
            return VerifiedToken(subject, issuer.name, _claims_access(claims))
        raise TokenError("the token's signature does not verify")

