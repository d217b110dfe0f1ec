"""The crypto module, from Wippy's page (en/lua/security/crypto.md), through a FunctionHost.

Known answers come from Python's own libraries (hmac, hashlib, cryptography),
so a wrong key order, encoding or layout in Moontide shows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from lua_helpers import done, failed, run_lua

MODS = ["crypto", "errors", "base64"]


def lua(body: str, *args: object) -> tuple[object, ...]:
    return done(run_lua(body, *args, modules=MODS))


def test_random_bytes_strings_and_uuids() -> None:
    got = lua("""
        local a, b = crypto.random.bytes(32), crypto.random.bytes(32)
        local s = crypto.random.string(40)
        local hex = crypto.random.string(64, "0123456789abcdef")
        return #a, a ~= b, base64.encode(a) ~= nil, #s, s:match("^[A-Za-z0-9]+$") ~= nil, hex:match("^[0-9a-f]+$") ~= nil,
               crypto.random.uuid(), #crypto.random.bytes(1048576)
    """)
    assert got[:6] == (32, True, True, 40, True, True)
    assert len(got[6]) == 36 and got[6][14] == "4"
    assert got[7] == 1 << 20


@pytest.mark.parametrize("call, message", [
    ("crypto.random.bytes(0)", "crypto.random.bytes: length must be a positive integer"),
    ("crypto.random.bytes(-3)", "crypto.random.bytes: length must be a positive integer"),
    ("crypto.random.bytes('ten')", "crypto.random.bytes: length must be a positive integer"),
    ("crypto.random.bytes(1048577)", "crypto.random.bytes: length exceeds maximum allowed size (1MB)"),
    ("crypto.random.string(0)", "crypto.random.string: length must be a positive integer"),
    ("crypto.random.string(8, '')", "crypto.random.string: charset cannot be empty"),
])
def test_random_invalid_lengths(call: str, message: str) -> None:
    got = lua(f"local v, err = {call} return v, errors.is(err, errors.INVALID), tostring(err)")
    assert got == (None, True, message)


def test_hmac_is_hex_with_the_key_first() -> None:
    got = lua("""
        return crypto.hmac.sha256("key", "The quick brown fox"), crypto.hmac.sha512("k\\xff", "\\x00data")
    """)
    assert got == (hmac.new(b"key", b"The quick brown fox", "sha256").hexdigest(),
                   hmac.new(b"k\xff", b"\x00data", "sha512").hexdigest())


def test_hmac_empty_key_is_invalid() -> None:
    got = lua("local v, err = crypto.hmac.sha256('', 'data') return v, errors.is(err, errors.INVALID), tostring(err)")
    assert got == (None, True, "crypto.hmac.sha256: key cannot be empty")


@pytest.mark.parametrize("cipher, key_len", [("aes", 16), ("aes", 24), ("aes", 32), ("chacha20", 32)])
def test_encrypt_decrypt_round_trip_with_and_without_aad(cipher: str, key_len: int) -> None:
    got = lua(f"""
        local key = crypto.random.bytes({key_len})
        local plain = "secret \\x00\\xff payload"
        local e1 = crypto.encrypt.{cipher}(plain, key)
        local e2 = crypto.encrypt.{cipher}(plain, key)
        local ea = crypto.encrypt.{cipher}(plain, key, "context")
        local _, wrong_aad = crypto.decrypt.{cipher}(ea, key, "other")
        local _, no_aad = crypto.decrypt.{cipher}(ea, key)
        local _, wrong_key = crypto.decrypt.{cipher}(e1, crypto.random.bytes({key_len}))
        local tampered = e1:sub(1, -2) .. string.char((e1:byte(-1) + 1) % 256)
        local _, bad_tag = crypto.decrypt.{cipher}(tampered, key)
        return #e1 - #plain, e1 ~= e2, crypto.decrypt.{cipher}(e1, key) == plain,
               crypto.decrypt.{cipher}(ea, key, "context") == plain,
               errors.is(wrong_aad, errors.INTERNAL), errors.is(no_aad, errors.INTERNAL),
               errors.is(wrong_key, errors.INTERNAL), errors.is(bad_tag, errors.INTERNAL), tostring(bad_tag)
    """)
    # nonce (12) prepended, tag (16) appended; a fresh nonce each time
    assert got[:8] == (28, True, True, True, True, True, True, True)
    assert got[8].startswith(f"crypto.decrypt.{cipher}: decrypt: message authentication failed")


def test_ciphertext_layout_is_nonce_then_ciphertext_and_tag() -> None:
    """Wippy's layout (Go's Seal(nonce, nonce, data, aad)): Python's AESGCM opens it."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    key = bytes(range(32))
    got = lua("""
        local key = ...
        return base64.encode(crypto.encrypt.aes("hello", key, "ad")), base64.encode(crypto.encrypt.chacha20("hi", key))
    """, "".join(map(chr, range(32))))
    aes, chacha = (base64.b64decode(g) for g in got)
    assert AESGCM(key).decrypt(aes[:12], aes[12:], b"ad") == b"hello"
    assert ChaCha20Poly1305(key).decrypt(chacha[:12], chacha[12:], None) == b"hi"


@pytest.mark.parametrize("call, message", [
    ("crypto.encrypt.aes('x', 'short')", "crypto.encrypt.aes: key must be 16, 24, or 32 bytes, got 5"),
    ("crypto.encrypt.chacha20('x', string.rep('k', 16))", "crypto.encrypt.chacha20: key must be 32 bytes, got 16"),
    ("crypto.decrypt.aes('x', string.rep('k', 16))", "crypto.decrypt.aes: encrypted data too short"),
    ("crypto.decrypt.chacha20('x', 'k')", "crypto.decrypt.chacha20: key must be 32 bytes, got 1"),
    ("crypto.encrypt.aes(nil, string.rep('k', 16))", "crypto.encrypt.aes: data and key must be strings"),
])
def test_encryption_invalid_input(call: str, message: str) -> None:
    got = lua(f"local v, err = {call} return v, errors.is(err, errors.INVALID), tostring(err)")
    assert got == (None, True, message)


def _b64url_json(part: str) -> object:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_jwt_hs256_known_token_and_round_trip() -> None:
    exp = int(time.time()) + 3600
    got = lua("""
        local exp = ...
        local token = crypto.jwt.encode({sub = "user123", exp = exp}, "secret_key")
        local claims, err = crypto.jwt.verify(token, "secret_key")
        local t384 = crypto.jwt.encode({sub = "x", exp = exp, _header = {kid = "k1"}}, "s", "HS384")
        local c384 = crypto.jwt.verify(t384, "s", "HS384")
        local c512 = crypto.jwt.verify(crypto.jwt.encode({exp = exp}, "s", "HS512"), "s", "HS512")
        return token, claims.sub, claims.exp, err, t384, c384.sub, c512.exp
    """, exp)
    header, payload, signature = got[0].split(".")
    assert _b64url_json(header) == {"alg": "HS256", "typ": "JWT"}
    assert _b64url_json(payload) == {"exp": exp, "sub": "user123"}
    expected = hmac.new(b"secret_key", f"{header}.{payload}".encode(), "sha256").digest()
    assert base64.urlsafe_b64decode(signature + "==") == expected
    assert got[1:4] == ("user123", exp, None)
    assert _b64url_json(got[4].split(".")[0]) == {"alg": "HS384", "kid": "k1", "typ": "JWT"}
    assert "_header" not in _b64url_json(got[4].split(".")[1])
    assert got[5:] == ("x", exp)


def test_jwt_verification_failures_are_internal() -> None:
    past, future = int(time.time()) - 10, int(time.time()) + 3600
    got = lua("""
        local past, future = ...
        local function check(...)
          local claims, err = crypto.jwt.verify(...)
          return claims == nil and errors.is(err, errors.INTERNAL) and tostring(err) or "unexpected"
        end
        local good = crypto.jwt.encode({sub = "u", exp = future}, "secret")
        local tampered = good:sub(1, -3) .. (good:sub(-2, -2) == "A" and "B" or "A") .. good:sub(-1)
        return check(good, "wrong secret"), check(good, "secret", "HS512"),
               check(crypto.jwt.encode({exp = past}, "secret"), "secret"),
               check(crypto.jwt.encode({sub = "no exp"}, "secret"), "secret"),
               check(crypto.jwt.encode({exp = future, nbf = future}, "secret"), "secret"),
               check("not.a.jwt.at.all", "secret"), check(tampered, "secret"),
               crypto.jwt.verify(crypto.jwt.encode({sub = "no exp"}, "secret"), "secret", "HS256", false).sub
    """, past, future)
    assert got[0] == "crypto.jwt.verify: verify token: token signature is invalid: signature is invalid"
    assert got[1] == ("crypto.jwt.verify: verify token: token is unverifiable: signing method HS256 is invalid "
                      "(expected HS512)")
    assert got[2] == "crypto.jwt.verify: verify token: token has invalid claims: token is expired"
    assert got[3] == ("crypto.jwt.verify: verify token: token has invalid claims: token is missing required claim: "
                      "exp claim is required")
    assert got[4] == "crypto.jwt.verify: verify token: token has invalid claims: token is not valid yet"
    assert got[5].startswith("crypto.jwt.verify: verify token: token is malformed")
    assert got[6].startswith("crypto.jwt.verify: verify token: token signature is invalid")
    assert got[7] == "no exp"  # require_exp = false


def test_jwt_rs256_with_pem_keys() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pkcs1 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()).decode()
    private_pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    exp = int(time.time()) + 60
    got = lua("""
        local pkcs1, pkcs8, public, exp = ...
        local t1 = crypto.jwt.encode({sub = "rsa", exp = exp}, pkcs1, "RS256")
        local t8 = crypto.jwt.encode({sub = "rsa8", exp = exp}, pkcs8, "RS256")
        local _, as_hs = crypto.jwt.verify(t1, public)
        local _, badkey = crypto.jwt.encode({exp = exp}, "not a pem", "RS256")
        return crypto.jwt.verify(t1, public, "RS256").sub, crypto.jwt.verify(t8, public, "RS256").sub,
               errors.is(as_hs, errors.INTERNAL), errors.is(badkey, errors.INVALID), t1
    """, private_pkcs1, private_pkcs8, public, exp)
    assert got[:4] == ("rsa", "rsa8", True, True)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header, payload, signature = got[4].split(".")
    key.public_key().verify(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
                            f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())


def test_jwt_refuses_unsupported_algorithms() -> None:
    got = lua("""
        local _, e1 = crypto.jwt.encode({}, "s", "none")
        local _, e2 = crypto.jwt.verify("a.b.c", "s", "ES256")
        local _, e3 = crypto.jwt.encode({1, 2}, "s")
        return errors.is(e1, errors.INVALID), tostring(e1), errors.is(e2, errors.INVALID), errors.is(e3, errors.INVALID)
    """)
    assert got == (True, "crypto.jwt.encode: unsupported algorithm 'none' (HS256, HS384, HS512 or RS256)", True, True)


def test_pbkdf2() -> None:
    got = lua("""
        return base64.encode(crypto.pbkdf2("master_secret", "oauth-token-salt", 10000, 32)),
               base64.encode(crypto.pbkdf2("pw", "salt", 1000, 64, "sha512"))
    """)
    assert base64.b64decode(got[0]) == hashlib.pbkdf2_hmac("sha256", b"master_secret", b"oauth-token-salt", 10000, 32)
    assert base64.b64decode(got[1]) == hashlib.pbkdf2_hmac("sha512", b"pw", b"salt", 1000, 64)


@pytest.mark.parametrize("args, message", [
    ("'', 'salt', 1, 32", "crypto.pbkdf2: password cannot be empty"),
    ("'pw', '', 1, 32", "crypto.pbkdf2: salt cannot be empty"),
    ("'pw', 'salt', 0, 32", "crypto.pbkdf2: iterations must be a positive integer"),
    ("'pw', 'salt', 10000001, 32", "crypto.pbkdf2: iterations exceeds maximum (10000000)"),
    ("'pw', 'salt', 1, 0", "crypto.pbkdf2: key length must be a positive integer"),
    ("'pw', 'salt', 1, 32, 'md5'", "crypto.pbkdf2: unsupported hash function: md5 (sha256 or sha512)"),
])
def test_pbkdf2_invalid(args: str, message: str) -> None:
    got = lua(f"local v, err = crypto.pbkdf2({args}) return v, errors.is(err, errors.INVALID), tostring(err)")
    assert got == (None, True, message)


def test_pbkdf2_is_charged_to_the_instruction_budget() -> None:
    """Work done in Python counts: a derivation the budget cannot pay for stops the step (not the worker)."""
    err = failed(run_lua("return crypto.pbkdf2('pw', 'salt', 5000000, 32)", modules=["crypto"]))
    assert err.kind == "BudgetExceeded"
    assert done(run_lua("return #crypto.pbkdf2('pw', 'salt', 1000, 32)", modules=["crypto"])) == (32,)


def test_constant_time_compare() -> None:
    got = lua("""
        return crypto.constant_time_compare("abc", "abc"), crypto.constant_time_compare("abc", "abd"),
               crypto.constant_time_compare("abc", "abcd"), crypto.constant_time_compare("", ""),
               pcall(crypto.constant_time_compare, "a", nil)
    """)
    assert got[:5] == (True, False, False, True, False)
    assert "a and b must be strings" in got[5]
