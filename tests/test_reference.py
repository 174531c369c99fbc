"""Reference parsing: accepted forms, rejected forms with messages that name the bad part."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import InvalidReferenceError, Reference, parse_reference
from hub.reference import validate_alias, validate_name, validate_version

pytestmark = pytest.mark.one_backend  # nothing here depends on the registry backend


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("digits", Reference("digits")),
        ("acme/digits-cnn", Reference("acme/digits-cnn")),
        ("acme/digits_cnn.v2:12", Reference("acme/digits_cnn.v2", version=12)),
        ("acme/x@production", Reference("acme/x", alias="production")),
        ("acme/x@latest", Reference("acme/x")),
        ("0ne/2wo", Reference("0ne/2wo")),
        ("a" * 64 + "/" + "b" * 64, Reference("a" * 64 + "/" + "b" * 64)),
    ],
)
def test_valid_references(text, expected):
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("../x", "'..' must start with"),
        ("a//b", "3 parts"),
        ("/abs", "empty part"),
        ("", "empty"),
        ("name:1.5", "'1.5' is not a positive integer"),
        ("name:-1", "'-1' is not a positive integer"),
        ("name:0", "'0'"),
        ("name:", "'' is not a positive integer"),
        ("name:01", "'01'"),
        ("\u0430cme/x", "invalid character '\u0430'"),  # Cyrillic a
        ("acme/x\u200b", "invalid character"),  # zero-width space
        ("Acme/x", "invalid character 'A'"),
        ("acme/x y", "invalid character ' '"),
        ("a/b/c", "3 parts"),
        ("a" * 65, "at most 64"),
        ("x@", "alias ''"),
        ("x@1a", "alias '1a' is invalid"),
        ("x:1@a", "both a version and an alias"),
        ("-x", "must start with"),
    ],
)
def test_invalid_references_name_the_bad_part(text, fragment):
    with pytest.raises(InvalidReferenceError) as error:
        parse_reference(text)
    assert fragment in str(error.value)
    assert "expected" in str(error.value) or "allowed" in str(error.value) or "both" in str(error.value)


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        parse_reference("bad//name")


def test_non_string_reference_is_rejected():
    with pytest.raises(InvalidReferenceError, match="must be a string"):
        parse_reference(3)


def test_latest_is_reserved_as_an_alias_to_set():
    with pytest.raises(InvalidReferenceError, match="reserved"):
        validate_alias("latest")
    assert validate_alias("latest", allow_latest=True) == "latest"


@pytest.mark.parametrize("value", [0, -3, True, 1.0, "1.5", "x", None])
def test_invalid_versions(value):
    with pytest.raises(InvalidReferenceError):
        validate_version(value)


part = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True)
name = st.one_of(part, st.tuples(part, part).map("/".join))
alias = st.from_regex(r"[a-z][a-z0-9._-]{0,63}", fullmatch=True).filter(lambda a: a != "latest")


@given(name=name, version=st.integers(min_value=1, max_value=10**9), alias=alias)
def test_round_trip(name, version, alias):
    for ref in (Reference(name), Reference(name, version=version), Reference(name, alias=alias)):
        assert parse_reference(str(ref)) == ref


@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_raises_the_typed_error(text):
    try:
        ref = parse_reference(text)
    except InvalidReferenceError:
        return
    assert str(ref) == text or text.endswith("@latest")
    assert validate_name(ref.name) == ref.name
