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
    """Wippy's kinds: text that is not JSON is Internal; no text, or empty text, is Invalid."""
    got = done(run_lua("""
        local v, e = json.decode('{"a": ')
        local v2, e2 = json.decode(42)
        local v3, e3 = json.decode("")
        return v, errors.is(e, errors.INTERNAL), tostring(e), v2, errors.is(e2, errors.INVALID), tostring(e2),
               v3, errors.is(e3, errors.INVALID), tostring(e3)
    """, modules=["json", "errors"]))
    assert got[:2] == (None, True)
    assert got[2].startswith("json.decode: not JSON: Expecting value: line 1 column 7")
    assert got[3:] == (None, True, "json.decode: string expected",
                       None, True, "json.decode: empty string is not valid JSON")


def test_json_encode_follows_wippys_rules() -> None:
    """An empty table is [] (but an empty object decoded from JSON stays {}), NaN and infinities are null."""
    got = done(run_lua("""
        return json.encode({}), json.encode({items = {}, n = 0/0, big = math.huge, small = -math.huge}),
               json.encode(json.decode('{"a": {}, "b": [], "c": {"x": null}}')), json.encode(json.array()),
               json.encode(nil), json.encode("s"), json.encode({1, 2, {k = "v"}})
    """, modules=["json"]))
    assert got == ("[]", '{"big":null,"items":[],"n":null,"small":null}', '{"a":{},"b":[],"c":{}}', "[]",
                   "null", '"s"', '[1,2,{"k":"v"}]')


def test_json_encode_errors_are_internal_naming_the_path() -> None:
    got = done(run_lua("""
        local t = {} t.self = t
        local a, e1 = json.encode({f = print})
        local b, e2 = json.encode(t)
        local c, e3 = json.encode({1, 2, x = 3})
        return a, errors.is(e1, errors.INTERNAL), tostring(e1), b, errors.is(e2, errors.INTERNAL), tostring(e2),
               c, errors.is(e3, errors.INTERNAL), tostring(e3)
    """, modules=["json", "errors"]))
    assert got == (None, True, "value.f: function values cannot cross to JSON",
                   None, True, "value.self: table contains itself",
                   None, True, "value: table mixes field names with the key 1 (JSON objects have string keys; "
                   "arrays have keys 1..n)")


def test_json_values_crossing_keep_empty_tables_as_objects() -> None:
    """Only json.encode writes an empty table as []: a result or argument keeps Moontide's {} (docs/lua-api.md)."""
    rt = make_runtime()
    out = done(run_lua("return {}, {a = {}}", rt=rt, modules=["json"]))
    assert [rt.from_lua(v) for v in out] == [{}, {"a": {}}]


def test_json_decode_with_a_type_validates() -> None:
    got = done(run_lua("""
        type Point = {x: number, y: number}
        local p = json.decode('{"x": 1, "y": 2}', Point)
        local bad, err = json.decode('{"x": "one"}', Point)
        local _, nottype = json.decode('{}', 42)
        return p.x + p.y, bad, errors.is(err, errors.INVALID), tostring(err), errors.is(nottype, errors.INVALID)
    """, modules=["json", "errors"]))
    assert got[:3] == (3, None, True)
    assert got[3].startswith("json.decode: ") and "x" in got[3], got[3]
    assert got[4] is True


def test_json_validate_against_a_schema() -> None:
    got = done(run_lua("""
        local schema = {
          type = "object",
          properties = { name = {type = "string", minLength = 1}, age = {type = "integer", minimum = 0} },
          required = {"name"},
        }
        local ok = json.validate(schema, {name = "Alice", age = 30})
        local no, err = json.validate(schema, {name = "", age = -1})
        local missing, err2 = json.validate(schema, {age = 3})
        local str_ok = json.validate('{"type": "number", "minimum": 0}', 42)
        local s_ok = json.validate_string(schema, '{"name": "Bob"}')
        local s_no, err3 = json.validate_string(schema, '{"name": 7}')
        local bad_schema, err4 = json.validate({type = "nonsense"}, 1)
        return ok, no, errors.is(err, errors.INVALID), tostring(err), missing, tostring(err2), str_ok, s_ok,
               s_no, tostring(err3), bad_schema, errors.is(err4, errors.INVALID)
    """, modules=["json", "errors"]))
    assert got[:3] == (True, False, True)
    assert got[3].startswith("json.validate: validation failed: $."), got[3]
    assert got[4] is False and "'name' is a required property" in got[5]
    assert got[6:9] == (True, True, False)
    assert got[9] == "json.validate: validation failed: $.name: 7 is not of type 'string'"
    assert got[10:] == (False, True)


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
        return hash.sha256("\\xff\\x00\\x80"), hash.md5("wörld"), hash.hmac_sha256("\\x01\\xff", "k\\xfe")
    """, modules=["hash"]))
    assert got == (hashlib.sha256(b"\xff\x00\x80").hexdigest(), hashlib.md5("wörld".encode()).hexdigest(),
                   hmac.new(b"k\xfe", b"\x01\xff", "sha256").hexdigest())


# -- hash -------------------------------------------------------------------


def test_hash_known_vectors() -> None:
    """Wippy's argument order: hash.hmac_sha256(data, secret)."""
    got = done(run_lua("""
        return hash.sha256("abc"), hash.md5(""), hash.sha1("abc"), hash.sha512(""):sub(1, 16),
               hash.hmac_sha256("The quick brown fox jumps over the lazy dog", "key")
    """, modules=["hash"]))
    assert got == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "d41d8cd98f00b204e9800998ecf8427e",
        "a9993e364706816aba3e25717850c26c9cd0d89d",
        "cf83e1357eefb8bd",
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
    )


def test_hash_of_non_string() -> None:
    got = done(run_lua("""
        local v, e = hash.sha256({})
        local h, e2 = hash.hmac_sha1("data", 5)
        return v, errors.is(e, errors.INVALID), tostring(e), h, tostring(e2)
    """, modules=["hash", "errors"]))
    assert got == (None, True, "hash.sha256: data must be a string", None, "hash.hmac_sha1: secret must be a string")


def test_hash_raw_digests_hmacs_and_fnv() -> None:
    import hashlib
    import hmac

    got = done(run_lua("""
        local function hex(raw) return (raw:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
        return hex(hash.sha256("abc", true)), hex(hash.md5("abc", true)), hash.hmac_md5("msg", "k"),
               hash.hmac_sha1("msg", "k"), hex(hash.hmac_sha512("msg", "k", true)), hash.fnv32(""), hash.fnv32("a"),
               hash.fnv64("a"), hash.fnv64(""), math.type(hash.fnv32("hello")), #hash.sha512("x", true)
    """, modules=["hash"]))
    assert got[0] == hashlib.sha256(b"abc").hexdigest() and got[1] == hashlib.md5(b"abc").hexdigest()
    assert got[2] == hmac.new(b"k", b"msg", "md5").hexdigest()
    assert got[3] == hmac.new(b"k", b"msg", "sha1").hexdigest()
    assert got[4] == hmac.new(b"k", b"msg", "sha512").hexdigest()
    assert got[10] == 64
    # FNV-1 (Go's hash/fnv New32/New64): offset basis for "", then multiply-then-xor
    assert got[5:9] == (0x811C9DC5, 0x050C5D7E, float(0xAF63BD4C8601B7BE), float(0xCBF29CE484222325))
    assert got[9] == "integer"


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
        local function ns(d) return d:nanoseconds() end
        return time.NANOSECOND, time.MICROSECOND, time.MILLISECOND, time.SECOND, time.MINUTE, time.HOUR,
               ns(time.parse_duration("1h30m")) == 5400 * 10^9, ns(time.parse_duration("500ms")),
               ns(time.parse_duration("1.5s")), ns(time.parse_duration(42)), ns(time.parse_duration(2.9))
    """, modules=["time"]))
    assert got == (1, 1000, 1_000_000, 1_000_000_000, 60_000_000_000, 3_600_000_000_000, True, 500_000_000,
                   1_500_000_000, 42, 2)


def test_durations_per_wippy() -> None:
    # en/lua/core/time.md: time.parse_duration and t1:sub(t2) give a Duration
    got = done(run_lua("""
        local d = time.parse_duration("1h30m45s500ms")
        local t0 = time.unix(100)
        local elapsed = t0:add("2500ms"):sub(t0)
        return d:hours(), d:minutes(), d:seconds(), d:milliseconds(), d:microseconds(), d:nanoseconds(),
               elapsed:milliseconds(), tostring(elapsed), tostring(d), tostring(time.parse_duration("250ms")),
               tostring(time.parse_duration(0)), tostring(t0:sub(t0:add("1m"))),
               elapsed < time.parse_duration("3s"), elapsed == time.parse_duration(2500 * time.MILLISECOND),
               (elapsed + time.SECOND):milliseconds(), (elapsed * 2):seconds(), elapsed > 2 * time.SECOND,
               t0:add(elapsed):unix_milli(), json.encode({ d = elapsed }), time.Duration:is(elapsed) ~= nil
    """, modules=["time", "json"]))
    assert got == (1.5126388888888888, 90.75833333333334, 5445.5, 5445500, 5445500000, 5445500000000,
                   2500, "2.5s", "1h30m45.5s", "250ms", "0s", "-1m0s", True, True, 3500, 5.0, True, 102500,
                   '{"d":2500000000}', True)


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
               later:unix(), later:sub(t):nanoseconds(), tostring(frac), frac:unix_milli(),
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


def test_uuid_v1_v3_v5() -> None:
    ns_url = "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
    before = pytime.time_ns()
    got = done(run_lua("""
        local ns = ...
        local bad, err = uuid.v5("not a uuid", "x")
        local bad2, err2 = uuid.v3(ns, 42)
        return uuid.v1(), uuid.v1(), uuid.v3(ns, "https://example.com/resource"),
               uuid.v5(ns, "https://example.com/resource"), bad, errors.is(err, errors.INVALID), tostring(err),
               bad2, errors.is(err2, errors.INVALID)
    """, ns_url, modules=["uuid", "errors"]))
    after = pytime.time_ns()
    a, b = pyuuid.UUID(got[0]), pyuuid.UUID(got[1])
    assert a.version == b.version == 1 and a != b
    assert before // 100 <= a.time - 0x01B21DD213814000 <= after // 100
    assert got[2] == str(pyuuid.uuid3(pyuuid.UUID(ns_url), "https://example.com/resource"))
    assert got[3] == str(pyuuid.uuid5(pyuuid.UUID(ns_url), "https://example.com/resource"))
    assert got[4:] == (None, True, "uuid.v5: namespace: invalid UUID format", None, True)


def test_uuid_inspection() -> None:
    got = done(run_lua("""
        local id = "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
        local v7 = uuid.parse("018f2c3a-7b6e-7cde-8f01-23456789abcd")
        local v1 = uuid.parse(id)
        local _, bad = uuid.version("nope")
        local _, badf = uuid.format(id, "weird")
        return uuid.validate(id), uuid.validate("{" .. id .. "}"), uuid.validate("urn:uuid:" .. id),
               uuid.validate((id:gsub("-", ""))), uuid.validate("nope"), uuid.validate(42), uuid.validate(nil),
               uuid.version(id), uuid.version(uuid.v4()), uuid.variant(id), uuid.variant("6ba7b811-9dad-11d1-c0b4-00c04fd430c8"),
               v1.version, v1.variant, v1.timestamp, v1.node, v7.version, v7.timestamp, v7.node,
               uuid.format(id), uuid.format(id, "simple"), uuid.format(id:upper(), "urn"),
               errors.is(bad, errors.INVALID), tostring(badf)
    """, modules=["uuid", "errors"]))
    assert got[:7] == (True, True, True, True, False, False, False)
    assert got[7:11] == (1, 4, "RFC4122", "Microsoft")
    v1 = pyuuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")
    assert got[11:15] == (1, "RFC4122", (v1.time - 0x01B21DD213814000) // 10**7, "00c04fd430c8")
    assert got[13] == 886630433  # 1998-02-04 22:13:53 UTC: the URL namespace's own time
    assert got[15:18] == (7, 0x018F2C3A7B6E // 1000, None)
    assert got[18:21] == ("6ba7b811-9dad-11d1-80b4-00c04fd430c8", "6ba7b8119dad11d180b400c04fd430c8",
                          "urn:uuid:6ba7b811-9dad-11d1-80b4-00c04fd430c8")
    assert got[21:] == (True, "uuid.format: unsupported format 'weird' (standard, simple or urn)")


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


def test_logger_wippy_style_with_children(caplog: pytest.LogCaptureFixture) -> None:
    """Wippy's logger is called with a colon; :with adds fields, :named a logger name; the module stays as it was."""
    with caplog.at_level(logging.DEBUG, logger="moontide.lua"):
        got = done(run_lua("""
            logger:info("hello", {a = 1})
            local child = logger:with({request_id = "r1"})
            child:warn("child", {b = 2})
            local named = child:named("auth")
            named:error("denied")
            named:named("db"):debug("deep")
            named.info("dot call on a child")
            local bad, err = logger:named("")
            logger:info("root again")
            return bad, errors.is(err, errors.INVALID)
        """, modules=["logger", "errors"]))
    assert got == (None, True)
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "moontide.lua"]
    assert records == [("INFO", 'hello {"a": 1}'), ("WARNING", 'child {"b": 2, "request_id": "r1"}'),
                       ("ERROR", 'denied {"logger": "auth", "request_id": "r1"}'),
                       ("DEBUG", 'deep {"logger": "auth.db", "request_id": "r1"}'),
                       ("INFO", "dot call on a child"), ("INFO", "root again")]


def test_logger_with_unencodable_fields_does_not_crash(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="moontide.lua"):
        assert done(run_lua("logger.info('f', {fn = print}) return 1", modules=["logger"])) == (1,)
    assert [r.getMessage() for r in caplog.records if r.name == "moontide.lua"] == ["f"]
