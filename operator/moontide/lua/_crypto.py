"""The crypto module's work (Wippy's ``crypto``), as pure functions of bytes.

Randomness comes in from the caller (``lua.host``): the real ``os.urandom``
outside workflows, the workflow's seeded random inside them, so a replay makes
the same nonces and random strings. Outputs match Wippy's byte for byte:
AEAD ciphertexts are ``nonce || ciphertext || tag``, JWTs are compact JSON
with sorted keys, HMACs are lowercase hex.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from .. import errors

__all__ = ["AEADS", "JWT_ALGORITHMS", "decrypt", "encrypt", "hmac_hex", "jwt_encode", "jwt_verify", "pbkdf2",
           "random_string"]

#: Cipher name -> (allowed key sizes as Wippy words them, nonce size)
AEADS = {"aes": ((16, 24, 32), "16, 24, or 32", 12), "chacha20": ((32,), "32", 12)}
JWT_ALGORITHMS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512", "RS256": None}
MAX_PBKDF2_ITERATIONS = 10_000_000


def _hmac_hash(alg: str) -> str:
    """The hashlib name of an HS* JWT algorithm."""
    name = JWT_ALGORITHMS[alg]
    assert name is not None, alg
    return name

DEFAULT_CHARSET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _internal(message: str) -> errors.MoontideError:
    return errors.Internal(message, retryable=False)


def _cipher(name: str, key: bytes, what: str) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    sizes, words, _ = AEADS[name]
    if len(key) not in sizes:
        raise errors.Invalid(f"{what}: key must be {words} bytes, got {len(key)}")
    return AESGCM(key) if name == "aes" else ChaCha20Poly1305(key)


def encrypt(name: str, data: bytes, key: bytes, aad: bytes | None, random: Callable[[int], bytes]) -> bytes:
    """``nonce || ciphertext || tag``; the nonce is ``random(size)``, drawn once the key is found good."""
    cipher = _cipher(name, key, f"crypto.encrypt.{name}")
    nonce = random(AEADS[name][2])
    return nonce + cipher.encrypt(nonce, data, aad)


def decrypt(name: str, data: bytes, key: bytes, aad: bytes | None) -> bytes:
    from cryptography.exceptions import InvalidTag

    cipher = _cipher(name, key, f"crypto.decrypt.{name}")
    size = AEADS[name][2]
    if len(data) < size:
        raise errors.Invalid(f"crypto.decrypt.{name}: encrypted data too short")
    try:
        return cipher.decrypt(data[:size], data[size:], aad)
    except InvalidTag:
        raise _internal(f"crypto.decrypt.{name}: decrypt: message authentication failed "
                        "(wrong key, wrong aad, or the data was changed)") from None


def hmac_hex(algo: str, key: bytes, data: bytes) -> str:
    if not key:
        raise errors.Invalid(f"crypto.hmac.{algo}: key cannot be empty")
    return hmac.new(key, data, algo).hexdigest()


def random_string(random: bytes, charset: bytes | None) -> bytes:
    """Wippy's selection: byte i of the result is charset[random[i] % len(charset)]."""
    chars = DEFAULT_CHARSET if charset is None else charset
    if not chars:
        raise errors.Invalid("crypto.random.string: charset cannot be empty")
    return bytes(chars[b % len(chars)] for b in random)


def pbkdf2(password: bytes, salt: bytes, iterations: int, length: int, hash_name: str) -> bytes:
    return hashlib.pbkdf2_hmac(hash_name, password, salt, iterations, length)


def check_pbkdf2(password: bytes, salt: bytes, iterations: Any, length: Any, hash_name: str) -> None:
    """Invalid for what Wippy refuses, before any work is done."""
    what = "crypto.pbkdf2"
    if not password:
        raise errors.Invalid(f"{what}: password cannot be empty")
    if not salt:
        raise errors.Invalid(f"{what}: salt cannot be empty")
    if not isinstance(iterations, int) or iterations <= 0:
        raise errors.Invalid(f"{what}: iterations must be a positive integer")
    if iterations > MAX_PBKDF2_ITERATIONS:
        raise errors.Invalid(f"{what}: iterations exceeds maximum ({MAX_PBKDF2_ITERATIONS})")
    if not isinstance(length, int) or length <= 0:
        raise errors.Invalid(f"{what}: key length must be a positive integer")
    if hash_name not in ("sha256", "sha512"):
        raise errors.Invalid(f"{what}: unsupported hash function: {hash_name} (sha256 or sha512)")


# -- JWT -------------------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _go_json(value: Any) -> bytes:
    """JSON as Go's encoding/json writes a map: sorted keys, no spaces, <, > and & escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for c, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                   ("\u2029", "\\u2029")):
        text = text.replace(c, esc)
    return text.encode("utf-8")


def _algorithm(alg: Any, what: str) -> str:
    if alg not in JWT_ALGORITHMS:
        raise errors.Invalid(f"{what}: unsupported algorithm {alg!r} (HS256, HS384, HS512 or RS256)")
    return str(alg)


def _rsa_private(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise errors.Invalid(f"crypto.jwt.encode: invalid RSA private key: {e}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise errors.Invalid("crypto.jwt.encode: invalid RSA private key: key is not an RSA private key")
    return key


def _rsa_public(pem: bytes) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key: Any
    try:
        key = x509.load_pem_x509_certificate(pem).public_key()
    except ValueError:
        try:
            key = load_pem_public_key(pem)
        except (ValueError, TypeError) as e:
            raise _internal(f"crypto.jwt.verify: verify token: failed to parse public key: {e}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise _internal("crypto.jwt.verify: verify token: key is not an RSA public key")
    return key


def jwt_encode(claims: dict[str, Any], key: bytes, alg: Any) -> str:
    """A signed compact JWT; ``claims["_header"]`` (a table) adds header fields."""
    alg = _algorithm(alg, "crypto.jwt.encode")
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    extra = claims.get("_header")
    if isinstance(extra, dict):
        header.update(extra)
        claims = {k: v for k, v in claims.items() if k != "_header"}
    signing_input = f"{_b64url(_go_json(header))}.{_b64url(_go_json(claims))}".encode("ascii")
    if alg == "RS256":
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        signature = _rsa_private(key).sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        if not key:
            raise errors.Invalid("crypto.jwt.encode: key cannot be empty")
        signature = hmac.new(key, signing_input, _hmac_hash(alg)).digest()
    return f"{signing_input.decode('ascii')}.{_b64url(signature)}"


def jwt_verify(token: str, key: bytes, alg: Any, require_exp: bool, now: float) -> dict[str, Any]:
    """The claims of a token signed with ``alg`` and ``key``; ``exp``/``nbf`` are checked against ``now`` (seconds)."""
    alg = _algorithm(alg, "crypto.jwt.verify")

    def bad(reason: str) -> errors.MoontideError:
        return _internal(f"crypto.jwt.verify: verify token: {reason}")

    parts = token.split(".")
    if len(parts) != 3:
        raise bad("token is malformed: token contains an invalid number of segments")
    try:
        header = json.loads(_unb64url(parts[0]))
        claims = json.loads(_unb64url(parts[1]))
        signature = _unb64url(parts[2])
    except (binascii.Error, ValueError, UnicodeDecodeError) as e:
        raise bad(f"token is malformed: {e}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise bad("token is malformed: header and claims must be JSON objects")
    if header.get("alg") != alg:
        raise bad(f"token is unverifiable: signing method {header.get('alg')} is invalid (expected {alg})")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    if alg == "RS256":
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            _rsa_public(key).verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise bad("token signature is invalid: crypto/rsa: verification error") from None
    else:
        if not key:
            raise errors.Invalid("crypto.jwt.verify: key cannot be empty")
        if not hmac.compare_digest(hmac.new(key, signing_input, _hmac_hash(alg)).digest(), signature):
            raise bad("token signature is invalid: signature is invalid")
    for name in ("exp", "nbf"):
        if name in claims and (isinstance(claims[name], bool) or not isinstance(claims[name], (int, float))):
            raise bad(f"token has invalid claims: {name} must be a number")
    if "exp" in claims:
        if now > claims["exp"]:
            raise bad("token has invalid claims: token is expired")
    elif require_exp:
        raise bad("token has invalid claims: token is missing required claim: exp claim is required")
    if "nbf" in claims and now < claims["nbf"]:
        raise bad("token has invalid claims: token is not valid yet")
    return claims
