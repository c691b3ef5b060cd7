"""The browser's port of the protocol (static/chat/protocol/, all of it through protocol.js),
run in Chromium, reproduces the Python reference: the fixed test vectors, signatures, frame
parsing and batch packing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from protocol import DeviceKey, Envelope, VersionVector, b64encode
from protocol.catchup import CatchUp, PullServer, SendDigest
from protocol.envelope import lamport_horizon
from protocol.errors import InvalidEnvelope, LamportAhead
from protocol.fingerprint import fingerprint_signed_bytes, sdp_fingerprint
from protocol.frames import encode_frame, parse_frame
from protocol.links import LinkReport, LinksFrame, parse_links_frame
from protocol.sync import DigestFrame, batches_for
from tests.browser.conftest import OpenPage
from tests.browser.stack import Server
from tests.helpers import ROOT
from tests.protocol.test_links import DEVICE, MALFORMED

VECTORS: dict[str, Any] = json.loads((ROOT / "tests" / "protocol" / "vectors.json").read_text())

SAMPLE_SDP = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=fingerprint:sha-256 AA:BB:CC\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "a=fingerprint:sha-512  DD:EE \r\n"
    "a=fingerprint:sha-256 AA:BB:CC\r\n"
)


@pytest.fixture
def page(open_page: OpenPage, server: Server) -> Iterator[Page]:
    """A page of the server's origin (a secure context, so WebCrypto is there)."""
    page = open_page()
    page.goto(server.url + "/")
    yield page


def run_js(page: Page, body: str, arg: Any = None) -> Any:
    """Run `body` as an async function of (p, arg), with p the protocol module."""
    return page.evaluate(
        "async (arg) => { const p = await import('/static/chat/protocol.js');\n" + body + "\n}",
        arg,
    )


def vector_key_js() -> str:
    """JS that imports the vectors' private key (RFC 8032 test 1) as a signing key."""
    return """
      const hexToBytes = (h) => Uint8Array.from(h.match(/../g), (b) => parseInt(b, 16));
      const privateKey = await crypto.subtle.importKey('jwk', {
        kty: 'OKP', crv: 'Ed25519', d: p.b64encode(hexToBytes(arg.key.private_hex)),
        x: arg.key.public_b64 }, { name: 'Ed25519' }, false, ['sign']);
      const key = { privateKey, device: arg.key.device_id };
    """


def test_canonical_bytes_match_the_vectors(page: Page) -> None:
    got = run_js(page, """
      return arg.map((v) => Array.from(p.canonicalBytes(v.domain, v.fields),
        (b) => b.toString(16).padStart(2, '0')).join(''));
    """, VECTORS["canonical"])
    assert got == [v["bytes_hex"] for v in VECTORS["canonical"]]


def test_device_id_of_the_vector_key_matches(page: Page) -> None:
    got = run_js(page, "return await p.deviceIdFor(p.b64decode(arg));",
                 VECTORS["key"]["public_b64"])
    assert got == VECTORS["key"]["device_id"]


def test_signed_envelope_matches_the_vector_byte_for_byte(page: Page) -> None:
    got = run_js(page, vector_key_js() + """
      const env = await p.createEnvelope(key, arg.envelope.fields);
      const hex = Array.from(p.envelopeSignedBytes(env),
        (b) => b.toString(16).padStart(2, '0')).join('');
      return { sig: env.sig, json: p.envelopeToJSON(env), signed: hex };
    """, VECTORS)
    envelope = VECTORS["envelope"]
    assert got == {"sig": envelope["sig"], "json": envelope["json"],
                   "signed": envelope["signed_bytes_hex"]}


def test_vector_envelope_verifies_and_a_tampered_copy_does_not(page: Page) -> None:
    got = run_js(page, """
      const env = p.envelopeFromObject(JSON.parse(arg.envelope.json));
      await p.verifyEnvelope(env, arg.key.public_b64);
      const tampered = p.envelopeFromObject({ ...env, text: env.text + '!' });
      try {
        await p.verifyEnvelope(tampered, arg.key.public_b64);
        return 'tampered copy verified';
      } catch (err) {
        return err.code;
      }
    """, VECTORS)
    assert got == "bad_signature"


def test_python_signatures_verify_in_the_browser(page: Page) -> None:
    key = DeviceKey.generate()
    env = Envelope.create(key, room="lobby", author="dana", seq=7, lamport=9, ts=5,
                          text="<b>ünïcode</b> 👋\n\ttabs")
    got = run_js(page, """
      const env = p.envelopeFromObject(JSON.parse(arg.json));
      await p.verifyEnvelope(env, arg.key);
      return p.envelopeId(env);
    """, {"json": env.to_json(), "key": key.public_key_b64})
    assert got == env.id


@pytest.mark.parametrize(("frame", "code"), [
    ('{"t":"msg","t":"msg","env":{}}', "invalid_envelope"),
    ('{"t":"vv","vector":{"' + "a" * 32 + '":1.0}}', "invalid_envelope"),
    ('{"t":"vv","vector":{"' + "a" * 32 + '":9007199254740993}}', "invalid_envelope"),
    ('{"t":"vv","vector":{},"extra":1}', "invalid_envelope"),
    ('{"t":"nope"}', "invalid_envelope"),
    ('{"t":"batch","envs":[],"more":1}', "invalid_envelope"),
    ("[1, 2", "invalid_envelope"),
    ('{"t":"vv","vector":{}}' + " " * 16_400, "too_large"),
])
def test_malformed_frames_are_refused_with_the_python_error_code(
    page: Page, frame: str, code: str,
) -> None:
    got = run_js(page, """
      try { p.parseSyncFrame(arg); return 'accepted'; } catch (err) { return err.code; }
    """, frame)
    assert got == code


def test_envelope_with_a_float_seq_or_a_lone_surrogate_is_refused(page: Page) -> None:
    env = json.loads(VECTORS["envelope"]["json"])
    float_seq = VECTORS["envelope"]["json"].replace('"seq":1', '"seq":1.0')
    surrogate = json.dumps({**env, "text": "a\ud800b"})
    got = run_js(page, """
      return arg.map((text) => {
        try { p.parseSyncFrame(`{"t":"msg","env":${text}}`); return 'accepted'; }
        catch (err) { return err.message; }
      });
    """, [float_seq, surrogate])
    assert "'seq' must be an integer" in got[0]
    assert "lone surrogate" in got[1]


def test_dtls_fingerprint_and_its_signed_bytes_match_python(page: Page) -> None:
    key_hex = VECTORS["key"]["private_hex"]
    key = DeviceKey.from_private_bytes(bytes.fromhex(key_hex))
    fingerprint = sdp_fingerprint(SAMPLE_SDP)
    signed = fingerprint_signed_bytes("lobby", "a" * 32, "b" * 32, fingerprint)
    got = run_js(page, vector_key_js() + """
      const fp = p.sdpFingerprint(arg.sdp);
      const bytes = p.fingerprintSignedBytes('lobby', 'a'.repeat(32), 'b'.repeat(32), fp);
      return { fp, sig: p.b64encode(await p.sign(key.privateKey, bytes)) };
    """, {**VECTORS, "sdp": SAMPLE_SDP})
    assert got == {"fp": fingerprint, "sig": b64encode(key.sign(signed))}


def test_batches_are_packed_exactly_as_python_packs_them(page: Page) -> None:
    key = DeviceKey.generate()
    envs = [Envelope.create(key, room="lobby", author="erin", seq=n, lamport=n, ts=n,
                            text=("é" * 3000 if n % 7 == 0 else f"message {n}"))
            for n in range(1, 131)]
    expected = batches_for(envs, more_after=True)
    got = run_js(page, """
      const envs = arg.map((text) => p.envelopeFromObject(JSON.parse(text)));
      return p.batchesFor(envs, true);
    """, [e.to_json() for e in envs])
    assert len(expected) > 2
    assert got == expected


def test_lamport_time_past_the_receivers_horizon_is_refused_as_in_python(page: Page) -> None:
    now_ms = 1_700_000_000_000
    horizon = lamport_horizon(now_ms)
    got = run_js(page, """
      return [arg.horizon, arg.horizon + 1].map((lamport) => {
        try { p.checkLamportHorizon({ lamport, device: 'd', seq: 1 }, arg.now); return 'ok'; }
        catch (err) { return err.code; }
      });
    """, {"now": now_ms, "horizon": horizon})
    assert got == ["ok", LamportAhead.code]


def test_link_reports_are_read_and_refused_as_in_python(page: Page) -> None:
    good = LinksFrame((LinkReport(DEVICE, "connected", 0.4375), LinkReport(DEVICE, "failed"),
                       LinkReport(DEVICE, "connecting", 12.0)))
    frames = [good.encode(), *(encode_frame(raw) for raw in MALFORMED)]

    def python(text: str) -> Any:
        try:
            return [link.to_dict() for link in parse_links_frame(parse_frame(text)).links]
        except InvalidEnvelope:
            return "refused"

    in_js = run_js(page, """
      return arg.map((text) => {
        try { return p.parseLinksFrame(p.parseFrame(text)); }
        catch (err) { return err instanceof p.ProtocolError ? 'refused' : String(err); }
      });""", frames)
    assert in_js == [python(text) for text in frames]
    assert in_js[0] != "refused" and in_js[1:] == ["refused"] * len(MALFORMED)
    # What the browser sends, Python reads.
    sent = run_js(page, "return p.linksFrame(arg);", [link.to_dict() for link in good.links])
    assert parse_links_frame(parse_frame(sent)) == good


def test_vector_digest_matches_the_vectors(page: Page) -> None:
    got = run_js(page, """
      const out = [];
      for (const v of arg) out.push(await p.vectorDigest(p.vectorFromObject(v.vector)));
      return out;
    """, VECTORS["vector_digest"])
    assert got == [v["digest"] for v in VECTORS["vector_digest"]]
    frame = DigestFrame(VECTORS["vector_digest"][1]["digest"]).encode()
    assert run_js(page, "return p.parseSyncFrame(arg);", frame) == {
        "t": "vvd", "digest": VECTORS["vector_digest"][1]["digest"]}


A, B, C = "a" * 32, "b" * 32, "c" * 32
# One script of inputs to the catch-up rules (protocol/catchup.py), run by both ports.
CATCH_UP_SCRIPT: list[list[Any]] = [
    ["link_up", A, 0], ["link_up", B, 0], ["link_up", C, 0.5],
    ["vector", A, {A: 3}, {A: 2}, 0.1], ["ended", A, 0.2], ["vector", A, {A: 3}, {A: 2}, 0.3],
    ["gap", B, 0.3], ["ended", B, 0.4], ["ended", B, 0.5], ["digest", B, "x", "x", 0.6],
    ["digest", B, "x", "y", 0.6], ["digest", B, "x", "y", 0.7],
    ["fresh", A, [A], {B: [A], C: [B]}, 1], ["next_due"], ["due", 1, {}, True],
    ["fresh", A, [A], {B: [A], C: [B]}, 1.1], ["next_due"], ["due", 1.25, {}, True],
    ["named", [f"{A}:4", f"{B}:1", "junk"], {A: 3}, 2], ["next_due"], ["due", 2.1, {A: 3}, True],
    ["due", 2.2, {A: 3}, True], ["named", [f"{C}:1"], {}, 2.3], ["due", 2.6, {}, True],
    ["server_ended"], ["due", 2.6, {}, True], ["named", [f"{C}:2"], {}, 3], ["due", 4, {}, False],
    ["link_down", C], ["due", 10, {}, True], ["next_due"],
]


def python_catch_up(script: list[list[Any]]) -> list[Any]:
    core = CatchUp(interval=3)
    out: list[Any] = []

    def effects(found: list[Any]) -> list[dict[str, str]]:
        return [{"kind": "pull_server"} if isinstance(e, PullServer) else
                {"kind": "digest" if isinstance(e, SendDigest) else "pull",
                 "device": e.device} for e in found]

    for op, *args in script:
        if op == "link_up":
            out.append(effects(core.link_up(args[0], args[1])))
        elif op == "link_down":
            core.link_down(args[0])
        elif op == "vector":
            out.append(effects(core.vector_received(
                args[0], VersionVector(args[1]), VersionVector(args[2]), args[3])))
        elif op == "ended":
            out.append(effects(core.answer_ended(args[0], args[1])))
        elif op == "gap":
            out.append(effects(core.gap_seen(args[0], args[1])))
        elif op == "digest":
            out.append(effects(core.digest_received(*args)))
        elif op == "fresh":
            core.fresh(args[0], args[1], {d: frozenset(v) for d, v in args[2].items()}, args[3])
        elif op == "named":
            core.server_named(args[0], VersionVector(args[1]), args[2])
        elif op == "server_ended":
            core.server_pull_ended()
        elif op == "due":
            out.append(effects(core.due(args[0], VersionVector(args[1]), args[2])))
        elif op == "next_due":
            out.append(core.next_due())
    return out


def test_catch_up_rules_decide_as_in_python(page: Page) -> None:
    got = run_js(page, """
      const core = new p.CatchUp({ interval: 3 });
      const vec = (o) => new Map(Object.entries(o));
      const out = [];
      for (const [op, ...a] of arg) {
        if (op === "link_up") out.push(core.linkUp(a[0], a[1]));
        else if (op === "link_down") core.linkDown(a[0]);
        else if (op === "vector") out.push(core.vectorReceived(a[0], vec(a[1]), vec(a[2]), a[3]));
        else if (op === "ended") out.push(core.answerEnded(a[0], a[1]));
        else if (op === "gap") out.push(core.gapSeen(a[0], a[1]));
        else if (op === "digest") out.push(core.digestReceived(a[0], a[1], a[2], a[3]));
        else if (op === "fresh") {
          const reports = new Map(Object.entries(a[2]).map(([d, v]) => [d, new Set(v)]));
          core.fresh(a[0], new Set(a[1]), reports, a[3]);
        } else if (op === "named") core.serverNamed(a[0], vec(a[1]), a[2]);
        else if (op === "server_ended") core.serverPullEnded();
        else if (op === "due") out.push(core.due(a[0], vec(a[1]), a[2]));
        else if (op === "next_due") out.push(core.nextDue());
      }
      return out;
    """, CATCH_UP_SCRIPT)
    expected = python_catch_up(CATCH_UP_SCRIPT)
    assert got == expected
    assert any(e == [{"kind": "pull_server"}] for e in expected), "the script reads the server"
    assert any(e == [{"kind": "digest", "device": C}] for e in expected), "and hints a peer"


def test_the_port_has_the_python_frame_types_and_limits(page: Page) -> None:
    """The browser peer hard-codes these; each must equal protocol/'s, or peers disagree on
    what a valid frame is. Each is read from the module named after its Python twin
    (static/chat/protocol/limits.js for protocol/limits.py, ...) and again through
    protocol.js, which re-exports them all."""
    from protocol import canonical, keys, limits, strict_json
    from protocol import links as link_rules
    from protocol.channel import FRAME_TYPES

    expected = {
        "channel": {"FRAME_TYPES": list(FRAME_TYPES)},
        "limits": {
            "MAX_TEXT_CHARS": limits.MAX_TEXT_CHARS, "MAX_TEXT_BYTES": limits.MAX_TEXT_BYTES,
            "MAX_FRAME_BYTES": limits.MAX_FRAME_BYTES, "MAX_SAFE": limits.MAX_SAFE_INTEGER,
            "MAX_BATCH": limits.MAX_BATCH, "MAX_VECTOR_DEVICES": limits.MAX_VECTOR_DEVICES,
            "MAX_USERNAME_CHARS": limits.MAX_USERNAME_CHARS,
            "MAX_ROOM_CHARS": limits.MAX_ROOM_CHARS, "LAMPORT_LEAD_MS": limits.LAMPORT_LEAD_MS,
            "ROOM_TAG_BYTES": limits.ROOM_TAG_BYTES,
        },
        "keys": {"SIGNATURE_BYTES": keys.SIGNATURE_BYTES, "KEY_BYTES": keys.KEY_BYTES},
        "canonical": {
            "ENVELOPE_DOMAIN": canonical.ENVELOPE_DOMAIN,
            "FINGERPRINT_DOMAIN": canonical.FINGERPRINT_DOMAIN,
            "VECTOR_DIGEST_DOMAIN": canonical.VECTOR_DIGEST_DOMAIN,
        },
        "links": {
            "LINK_STATES": list(link_rules.LINK_STATES), "MAX_LINKS": link_rules.MAX_LINKS,
            "MAX_RTT_MS": link_rules.MAX_RTT_MS,
        },
        "strict-json": {
            "MAX_JSON_DEPTH": strict_json.MAX_JSON_DEPTH,
            "MAX_INT_DIGITS": strict_json.MAX_INT_DIGITS,
        },
    }
    got = run_js(page, """
      const out = {};
      for (const [module, names] of Object.entries(arg)) {
        const twin = await import(`/static/chat/protocol/${module}.js`);
        out[module] = Object.fromEntries(names.map((name) => [name, [twin[name], p[name]]]));
      }
      return out;
    """, {module: list(constants) for module, constants in expected.items()})
    assert got == {module: {name: [value, value] for name, value in constants.items()}
                   for module, constants in expected.items()}


def test_room_tags_are_written_and_checked_as_in_python(page: Page) -> None:
    """Every frame but ping and pong names its room; both ports write the tag byte for byte
    alike, and the browser (one room per page) refuses an untagged frame or another room's."""
    from protocol.channel import AckFrame, parse_room_frame, tag_room

    frame = AckFrame(("a:1", "b:2")).encode()
    for room in ("lobby", "café-été", "a.b_c-d"):
        got = run_js(page, "return p.tagRoom(arg[0], arg[1]);", [frame, room])
        assert got == tag_room(frame, room)
        assert parse_room_frame(got) == (room, AckFrame(("a:1", "b:2")))
    refusals = run_js(page, """
        const codes = [];
        for (const raw of arg) {
          try { p.untagRoom(raw, "lobby"); codes.push("accepted"); }
          catch (err) { codes.push(err.code); }
        }
        return codes;""", [{"t": "ack", "ids": []}, {"room": "other", "t": "ack", "ids": []},
                          {"room": "lobby", "t": "ack", "ids": []}])
    assert refusals == ["invalid_envelope", "not_in_room", "accepted"]
