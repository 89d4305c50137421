"""Property tests of the pure values: digests, repository names and tags, byte ranges.

Each parser takes what the grammar allows back unchanged, and anything else
raises the typed error the client is told about: never another exception.
The grammars are written here from the distribution spec, not imported, so a
parser that drifts from the spec fails.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ocireg.api.download import ByteRange, parse_range
from ocireg.api.errors import WIRE
from ocireg.api.streaming import parse_content_range
from ocireg.digest import Digest, is_digest
from ocireg.errors import (
    DIGEST_INVALID,
    NAME_INVALID,
    SIZE_INVALID,
    TAG_INVALID,
    RegistryError,
)
from ocireg.names import MAX_NAME_LENGTH, validate_name, validate_tag

# The distribution spec's grammar of names and tags.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}

# Built piece by piece: hypothesis's from_regex of the whole grammar is slow.
_ALNUM = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_components = st.tuples(
    _ALNUM, st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "---"]), _ALNUM), max_size=3)
).map(lambda t: t[0] + "".join(separator + run for separator, run in t[1]))
names = st.lists(_components, min_size=1, max_size=6).map("/".join)
tags = st.from_regex(_TAG, fullmatch=True)
digest_texts = st.sampled_from(sorted(_HEX_LENGTHS)).flatmap(
    lambda algorithm: st.text("0123456789abcdef", min_size=_HEX_LENGTHS[algorithm],
                              max_size=_HEX_LENGTHS[algorithm]).map(lambda h: f"{algorithm}:{h}")
)


def _near(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Texts one edit away from a valid one: where parsers' edge cases are."""
    return st.tuples(valid, st.integers(0, 300), st.characters(), st.booleans()).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + (1 if t[3] else 0):]
    )


def _raises_only(code, parse, text):
    """`parse(text)`, or None when it raised RegistryError(code): nothing else may escape."""
    try:
        return parse(text)
    except RegistryError as e:
        assert e.code is code, (text, e.code)
        return None


# Digests


@given(digest_texts)
def test_a_valid_digest_round_trips(text):
    digest = Digest.parse(text)
    assert str(digest) == text
    assert Digest.parse(str(digest)) == digest
    assert is_digest(text)


@given(st.binary(), st.sampled_from(sorted(_HEX_LENGTHS)))
def test_the_digest_of_bytes_parses_back_to_itself(data, algorithm):
    digest = Digest.of(data, algorithm)
    assert Digest.parse(str(digest)) == digest


@given(st.one_of(st.text(), _near(digest_texts), digest_texts.map(str.upper)))
@example("sha256:" + "0" * 64 + "\n")
@example("md5:" + "0" * 32)
@example("sha256:" + "0" * 63)
def test_a_digest_either_parses_to_itself_or_is_digest_invalid(text):
    digest = _raises_only(DIGEST_INVALID, Digest.parse, text)
    if digest is not None:
        assert str(digest) == text
        assert len(digest.hex) == _HEX_LENGTHS[digest.algorithm]


# Names and tags


@given(names)
def test_a_valid_name_is_accepted_as_it_is(name):
    assert validate_name(name) == name


@given(st.one_of(st.text(), _near(names)))
@example("library/ubuntu\n")
@example("Library/ubuntu")
@example("a" * (MAX_NAME_LENGTH + 1))
@example("a//b")
@example("a/")
def test_a_name_is_accepted_only_if_the_grammar_allows_it_else_name_invalid(text):
    accepted = _raises_only(NAME_INVALID, validate_name, text)
    allowed = _NAME.fullmatch(text) is not None and len(text.encode()) <= MAX_NAME_LENGTH
    assert (accepted == text) if allowed else (accepted is None)


@given(tags)
def test_a_valid_tag_is_accepted_as_it_is_and_never_taken_for_a_digest(tag):
    assert validate_tag(tag) == tag
    assert not is_digest(tag)


@given(st.one_of(st.text(), _near(tags)))
@example("latest\n")
@example(".hidden")
@example("-dash")
@example("a" * 129)
def test_a_tag_is_accepted_only_if_the_grammar_allows_it_else_tag_invalid(text):
    accepted = _raises_only(TAG_INVALID, validate_tag, text)
    allowed = _TAG.fullmatch(text) is not None
    assert (accepted == text) if allowed else (accepted is None)


# Range (blob downloads)


def _range_or_416(header, size):
    try:
        return parse_range(header, size)
    except RegistryError as e:
        assert WIRE[e.code].status == 416
        assert e.headers == {"Content-Range": f"bytes */{size}"}
        return 416


@given(st.one_of(st.none(), st.text(), st.from_regex(r"bytes=\d*-\d*", fullmatch=True)),
       st.integers(0, 2**40))
def test_a_range_is_within_the_blob_or_ignored_or_416(header, size):
    answer = _range_or_416(header, size)
    if isinstance(answer, ByteRange):
        assert 0 <= answer.start <= answer.end < size
        assert answer.length == answer.end - answer.start + 1


@given(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**40))
def test_a_range_from_first_to_last_is_cut_at_the_blobs_end(first, length, size):
    last = first + length
    answer = _range_or_416(f"bytes={first}-{last}", size)
    if first >= size:
        assert answer == 416
    else:
        assert answer == ByteRange(first, min(last, size - 1))


@given(st.integers(0, 2**40), st.integers(0, 2**40))
def test_an_open_range_runs_to_the_blobs_end(first, size):
    answer = _range_or_416(f"bytes={first}-", size)
    assert answer == (416 if first >= size else ByteRange(first, size - 1))


@given(st.integers(1, 2**40), st.integers(0, 2**40))
def test_a_suffix_range_serves_the_last_bytes(suffix, size):
    answer = _range_or_416(f"bytes=-{suffix}", size)
    assert answer == (416 if size == 0 else ByteRange(max(size - suffix, 0), size - 1))


@given(st.binary(min_size=1, max_size=64), st.data())
def test_a_range_selects_the_bytes_it_names(data, draw):
    first = draw.draw(st.integers(0, len(data) - 1))
    last = draw.draw(st.integers(first, len(data) + 5))
    answer = parse_range(f"bytes={first}-{last}", len(data))
    assert data[answer.start:answer.end + 1] == data[first:last + 1]


@pytest.mark.parametrize("header", [None, "", "bytes=-", "bytes=5-2", "bytes=0-1,4-5", "items=0-1"])
def test_a_range_the_spec_lets_us_ignore_serves_the_whole_blob(header):
    assert parse_range(header, 10) is None


# Content-Range (upload chunks)


@given(st.integers(0, 2**50), st.integers(0, 2**40),
       st.sampled_from(["{}-{}", "bytes {}-{}", "bytes={}-{}", "{}-{}/*", "bytes {}-{}/{}"]),
       st.booleans())
def test_a_content_range_parses_to_its_first_and_last_offsets(start, extra, form, with_length):
    end = start + extra
    value = form.format(start, end, end + 1)
    length = extra + 1 if with_length else None
    assert parse_content_range(value, length) == (start, end)


@given(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**40))
def test_a_content_range_disagreeing_with_its_length_is_size_invalid(start, extra, length):
    end = start + extra
    with pytest.raises(RegistryError) as raised:
        parse_content_range(f"{start}-{end}", length if length != extra + 1 else length + 1)
    assert raised.value.code is SIZE_INVALID


@given(st.integers(1, 2**40), st.integers(1, 2**40))
def test_a_content_range_ending_before_it_starts_is_416(end, back):
    with pytest.raises(RegistryError) as raised:
        parse_content_range(f"{end + back}-{end}", None)
    assert WIRE[raised.value.code].status == 416


@given(st.one_of(st.text(), st.from_regex(r"(bytes[ =])?\d+-\d+(/(\d+|\*))?", fullmatch=True)),
       st.one_of(st.none(), st.integers(0, 2**40)))
def test_any_content_range_parses_or_raises_only_its_typed_errors(value, length):
    try:
        start, end = parse_content_range(value, length)
    except RegistryError as e:
        # A client error: 400 for a malformed one or a wrong length, 416 out of order.
        assert WIRE[e.code].status in (400, 416)
        return
    assert 0 <= start <= end
    assert length is None or length == end - start + 1
