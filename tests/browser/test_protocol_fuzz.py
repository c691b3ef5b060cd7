"""The browser's port of the protocol (static/chat/protocol/, through protocol.js) fed the
fuzzing corpus of tests/hostile/test_fuzz.py in Chromium: every parser a peer's frame reaches
returns a value or refuses with a ProtocolError that has a code and a reason, and never throws
anything else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from protocol import ProtocolError, parse_frame
from protocol.paging import parse_order_token
from tests.browser.conftest import OpenPage
from tests.browser.stack import Server
from tests.hostile.fuzz_corpus import JSON_VALUES, NAMES, TEXTS, TOKENS, corpus, dumps

CLASSIFY = """
  const verdict = (run) => {
    try {
      const value = run();
      return { ok: true, value: value === undefined ? null : value };
    } catch (err) {
      if (err instanceof p.ProtocolError && err.code && err.message) {
        return { ok: false, code: err.code };
      }
      return { uncaught: `${err && err.name}: ${err && err.message}` };
    }
  };
"""


@pytest.fixture
def page(open_page: OpenPage, server: Server) -> Iterator[Page]:
    page = open_page()
    page.goto(server.url + "/")
    yield page


def run_corpus(page: Page, body: str, inputs: list[Any]) -> list[dict[str, Any]]:
    """Run `body` (a JS expression of `input` and the protocol module `p`) on every input."""
    results: list[dict[str, Any]] = page.evaluate(
        "async (inputs) => { const p = await import('/static/chat/protocol.js');"
        + CLASSIFY + f"return inputs.map((input) => verdict(() => {body})); }}", inputs)
    uncaught = [(i, r["uncaught"]) for i, r in zip(inputs, results, strict=True)
                if "uncaught" in r]
    assert not uncaught, uncaught[:5]
    return results


def python_accepts(parse: Any, data: Any) -> bool:
    try:
        parse(data)
    except ProtocolError:
        return False
    return True


def test_frames_are_parsed_or_refused_with_a_reason_as_in_python(page: Page) -> None:
    texts = corpus(TEXTS)
    got = run_corpus(page, "{ p.parseFrame(input); return 'parsed'; }", texts)
    assert [r.get("ok", False) for r in got] == [python_accepts(parse_frame, t) for t in texts]
    synced = run_corpus(page, "{ p.parseSyncFrame(input); return 'parsed'; }", texts)
    assert any(r["ok"] for r in synced) and any(not r["ok"] for r in synced)


def test_envelopes_vectors_and_link_reports_refuse_any_json_with_a_reason(page: Page) -> None:
    texts = [dumps(value) for value in corpus(JSON_VALUES)]
    for parser in ("envelopeFromObject", "vectorFromObject", "parseLinksFrame",
                   "syncFrameFromObject"):
        run_corpus(page, f"{{ p.{parser}(p.parseFrame(input)); return 'parsed'; }}", texts)


def test_names_are_checked_without_throwing(page: Page) -> None:
    names = corpus(NAMES)
    got = run_corpus(page, "[p.isNormalizedName(input, 32), p.isNormalizedName(input, 64)]",
                     names)
    assert all(r["ok"] and all(isinstance(v, bool) for v in r["value"]) for r in got)


def test_page_tokens_parse_within_the_limits_or_not_at_all(page: Page) -> None:
    tokens = corpus(TOKENS)
    got = run_corpus(page, "p.parseOrderToken(input)", tokens)
    for token, result in zip(tokens, got, strict=True):
        key = parse_order_token(token)
        expected = None if key is None else {"lamport": key[0], "device": key[1], "seq": key[2]}
        assert result["value"] == expected, token
