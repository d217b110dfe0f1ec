"""The pure helper modules (json, base64, hash, errors, time, uuid, logger)
through a FunctionHost."""

from __future__ import annotations

import logging
import re
import time as pytime
import uuid as pyuuid

import pytest
from lua_helpers import done, eval_lua, failed, make_runtime, run_lua, start_chunk, wrap_body

# -- json -------------------------------------------------------------------


def test_json_encode() -> None:
    got = eval_lua("return json.encode({b = {1, 2, 'x'}, a = true, c = {d = 'q\"\\n\\1'}})", modules=["json"])
    assert got == '{"a":true,"b":[1,2,"x"],"c":{"d":"q\\"\\n\\u0001"}}'
    assert eval_lua("return json.encode('s'), json.encode(1), json.encode(nil)", modules=["json"]) == '"s"'
    assert done(run_lua("return json.encode(1.5), json.encode(nil), json.encode(false)", modules=["json"])) == \
        ("1.5", "null", "false")


def test_json_decode() -> None:
    got = done(run_lua("""
        local v = json.decode('{"a": {"b": [10, 20]}, "s": "h\\\\u00e9", "t": true}')
        return v.a.b[2], v.s, v.t
    """, modules=["json"]))
    assert got == (20, "hé", True)


def test_json_decode_errors() -> None:
    got = done(run_lua("""
        local v, e = json.decode('{"a": ')
        local v2, e2 = json.decode(42)
        return v, e:kind(), e:message(), v2, e2:kind(), e2:message()
    """, modules=["json"]))
    assert got[:2] == (None, "Invalid")
    assert got[2].startswith("json.decode: not JSON: Expecting value: line 1 column 7")
    assert got[3:] == (None, "Invalid", "json.decode: expected a string")


# -- base64 -----------------------------------------------------------------


def test_base64_round_trip() -> None:
    got = done(run_lua("""
        local e = base64.encode("hello, wörld")
        return e, base64.decode(e), base64.encode("")
    """, modules=["base64"]))
    assert got == ("aGVsbG8sIHfDtnJsZA==", "hello, wörld", "")


def test_base64_decode_invalid() -> None:
    got = done(run_lua("local v, e = base64.decode('not base64!') return v, e:kind(), e:message()", modules=["base64"]))
    assert got[:2] == (None, "Invalid")
    assert got[2].startswith("base64.decode:")


def test_base64_binary_round_trip() -> None:
    got = done(run_lua("""
        local raw = "\\xff\\x00\\x80ab"
        local e, err = base64.encode(raw)
        return e, base64.decode(e) == raw
    """, modules=["base64"]))
    assert got == ("/wCAYWI=", True)


def test_base64_every_byte_round_trips() -> None:
    got = done(run_lua("""
        local bytes = {}
        for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
        local raw = table.concat(bytes):rep(40)  -- 10,240 bytes: more than one chunk
        local e = base64.encode(raw)
        return e:sub(1, 12), #e, base64.decode(e) == raw
    """, modules=["base64"]))
    assert got == ("AAECAwQFBgcI", 13656, True)


def test_hash_of_binary_and_text() -> None:
    import hashlib
    import hmac

    got = done(run_lua("""
        return hash.sha256("\\xff\\x00\\x80"), hash.md5("wörld"), hash.hmac_sha256("k\\xfe", "\\x01\\xff")
    """, modules=["hash"]))
    assert got == (hashlib.sha256(b"\xff\x00\x80").hexdigest(), hashlib.md5("wörld".encode()).hexdigest(),
                   hmac.new(b"k\xfe", b"\x01\xff", "sha256").hexdigest())


# -- hash -------------------------------------------------------------------


def test_hash_known_vectors() -> None:
    got = done(run_lua("""
        return hash.sha256("abc"), hash.md5(""), hash.sha1("abc"), hash.sha512(""):sub(1, 16),
               hash.hmac_sha256("key", "The quick brown fox jumps over the lazy dog")
    """, modules=["hash"]))
    assert got == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "d41d8cd98f00b204e9800998ecf8427e",
        "a9993e364706816aba3e25717850c26c9cd0d89d",
        "cf83e1357eefb8bd",
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
    )


def test_hash_of_non_string() -> None:
    got = done(run_lua("local v, e = hash.sha256({}) return v, e:kind(), e:message()", modules=["hash"]))
    assert got[:2] == (None, "Invalid")
    assert got[2].startswith("hash.sha256: expected a string, got ")  # (the Python type name follows)


# -- errors -----------------------------------------------------------------


def test_errors_new_is_wrap() -> None:
    got = done(run_lua("""
        local e = errors.new{kind = errors.NOT_FOUND, message = "no order 7", retryable = true, details = {id = 7}}
        local w = errors.wrap(e, "loading")
        local plain = errors.new("oops")
        return e:kind(), e:message(), e:retryable(), e:details().id, tostring(e), errors.is(e, "NotFound"),
               errors.is(e, "Invalid"), errors.is("NotFound", "NotFound"), e:kind() == errors.NOT_FOUND,
               w:kind(), w:message(), w:retryable(), w:details().id, plain:kind(), plain:retryable(),
               errors.wrap("raw", "ctx"):message(), plain:kind() == errors.UNKNOWN
    """, modules=["errors"]))
    assert got == ("NotFound", "no order 7", True, 7, "no order 7", True, False, False, True,
                   "NotFound", "loading: no order 7", True, 7, "Unknown", False, "ctx: raw", True)


def test_an_error_knows_where_it_was_made() -> None:
    got = done(run_lua("""
        local function make() local e = errors.new("here") return e end
        local e = make()
        local stack = errors.call_stack(e)
        return e:stack(), stack.frames[1].source, stack.frames[1].line, stack.frames[1].name,
               errors.call_stack("not an error")
    """, modules=["errors"]))
    assert got[0].startswith("stack traceback:\n\ttest.lua:2: in ")
    assert got[1:] == ("test.lua", 2, "make", None)


def test_errors_constants() -> None:
    got = eval_lua("return errors.INVALID .. ',' .. errors.TIMEOUT .. ',' .. errors.CANCELED .. ',' .. "
                   "errors.UNAVAILABLE", modules=["errors"])
    assert got == "Invalid,Timeout,Canceled,Unavailable"


@pytest.mark.parametrize("arg, message", [
    ("42", "errors.new: expected a message string or a table with a message"),
    ("{kind = 'X'}", "errors.new: expected a message string or a table with a message"),
    ("{kind = {}, message = 'm'}", "errors.new: kind must be a string like errors.NOT_FOUND, got table"),
])
def test_errors_new_bad_arguments(arg: str, message: str) -> None:
    err = failed(run_lua(f"local e = errors.new({arg})\nreturn e", modules=["errors"]))
    assert message in str(err)
    assert "test.lua:1:" in str(err)


# -- time -------------------------------------------------------------------


def test_time_constants_and_durations() -> None:
    got = done(run_lua("""
        return time.NANOSECOND, time.MICROSECOND, time.MILLISECOND, time.SECOND, time.MINUTE, time.HOUR,
               time.parse_duration("1h30m") == 5400 * 10^9, time.parse_duration("500ms"),
               time.parse_duration("1.5s"), time.parse_duration(42), time.parse_duration(2.9)
    """, modules=["time"]))
    assert got == (1, 1000, 1_000_000, 1_000_000_000, 60_000_000_000, 3_600_000_000_000, True, 500_000_000,
                   1_500_000_000, 42, 2)


@pytest.mark.parametrize("arg, text", [
    ("'soon'", "time.parse_duration: invalid duration 'soon'"),
    ("-5", "time.parse_duration: negative duration"),
    ("{}", "time.parse_duration: expected a duration like '1h30m' or nanoseconds, got table"),
])
def test_invalid_duration(arg: str, text: str) -> None:
    got = done(run_lua(f"local d, e = time.parse_duration({arg}) return d, e:kind(), e:message()", modules=["time"]))
    assert got[:2] == (None, "Invalid")
    assert got[2].startswith(text), got[2]


def test_time_object_methods() -> None:
    got = done(run_lua("""
        local t = time.unix(1704067200)
        local later = t:add("1h30m")
        local frac = time.unix(1704067200, 500000000)
        return t:unix(), t:unix_milli(), t:format("%Y-%m-%d %H:%M"), tostring(t), t:format(),
               later:unix(), later:sub(t), tostring(frac), frac:unix_milli(),
               t < later, later > t, t <= time.unix(1704067200), t == time.unix(1704067200), t ~= later,
               t:before(later), t:after(later), t:equal(time.unix(1704067200)), json.encode({at = t})
    """, modules=["time", "json"]))
    assert got == (1704067200, 1704067200000, "2024-01-01 00:00", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z",
                   1704072600, 5_400_000_000_000, "2024-01-01T00:00:00.5Z", 1704067200500,
                   True, True, True, True, True, True, False, True, '{"at":"2024-01-01T00:00:00Z"}')


def test_time_add_invalid_duration_raises() -> None:
    err = failed(run_lua("local t = time.unix(0):add('nope')\nreturn t", modules=["time"]))
    assert "time:add: invalid duration 'nope'" in str(err)
    assert err.kind == "Invalid"


def test_time_now_is_host_clock() -> None:
    before = pytime.time_ns()
    ns = eval_lua("return time.now():unix_nano()", modules=["time"])
    after = pytime.time_ns()
    assert before <= ns <= after


def test_time_sleep_yields_to_host() -> None:
    rt = make_runtime()
    thread = start_chunk(rt, wrap_body("local ok, e = time.sleep('250ms') return ok, e"), modules=["time"])
    step = thread.step()
    assert (step.op, step.args) == ("sleep", (250_000_000,))
    assert thread.step(True, True).values == (True, None)
    # a bad duration answers nil, err without yielding
    got = done(run_lua("local ok, e = time.sleep('x') return ok, e:kind()", modules=["time"]))
    assert got == (None, "Invalid")


# -- uuid -------------------------------------------------------------------

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_uuid_v4_format() -> None:
    a, b = done(run_lua("return uuid.v4(), uuid.v4()", modules=["uuid"]))
    assert UUID4.match(a) and UUID4.match(b)
    assert a != b
    assert pyuuid.UUID(a).version == 4


def test_uuid_v7_version_and_order() -> None:
    rt = make_runtime()
    ids = []
    for _ in range(3):
        before_ms = pytime.time_ns() // 1_000_000
        ids.append(done(run_lua("return uuid.v7()", rt=rt, modules=["uuid"]))[0])
        after_ms = pytime.time_ns() // 1_000_000
        assert UUID7.match(ids[-1]), ids[-1]
        assert pyuuid.UUID(ids[-1]).version == 7
        ts = int(ids[-1].replace("-", "")[:12], 16)
        assert before_ms <= ts <= after_ms
        pytime.sleep(0.003)
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


# -- logger / print ---------------------------------------------------------


def test_logger_calls_reach_the_host_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="moontide.lua"):
        got = done(run_lua("""
            logger.debug("d")
            logger.info("hello", {b = 2, a = {1}})
            logger.warn("careful")
            logger.error(42)
            print("p", 1, nil, true)
            return "ok"
        """, modules=["logger"]))
    assert got == ("ok",)
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "moontide.lua"]
    assert records == [("DEBUG", "d"), ("INFO", 'hello {"a": [1], "b": 2}'), ("WARNING", "careful"),
                       ("ERROR", "42"), ("INFO", "p\t1\tnil\ttrue")]


def test_logger_with_unencodable_fields_does_not_crash(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="moontide.lua"):
        assert done(run_lua("logger.info('f', {fn = print}) return 1", modules=["logger"])) == (1,)
    assert [r.getMessage() for r in caplog.records if r.name == "moontide.lua"] == ["f"]
