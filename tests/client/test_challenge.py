"""The WWW-Authenticate parser: RFC 9110 challenges, registry quirks, and nothing but ChallengeError on garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regtool.client.net.challenge import Challenge, ChallengeError, parse_challenges


def test_docker_hub_bearer() -> None:
    value = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'
    assert parse_challenges(value) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/busybox:pull",
            },
        )
    ]


def test_basic_realm() -> None:
    assert parse_challenges('Basic realm="Registry Realm"') == [Challenge("basic", {"realm": "Registry Realm"})]


def test_scheme_and_param_names_are_case_insensitive() -> None:
    (challenge,) = parse_challenges('BEARER Realm="r", SERVICE="s"')
    assert challenge.scheme == "bearer"
    assert challenge.params == {"realm": "r", "service": "s"}


def test_comma_inside_quotes_does_not_split() -> None:
    (challenge,) = parse_challenges('Bearer realm="r",scope="repository:a/b:pull,push"')
    assert challenge.params["scope"] == "repository:a/b:pull,push"


def test_escaped_quote_and_backslash() -> None:
    (challenge,) = parse_challenges(r'Basic realm="say \"hi\" \\ bye"')
    assert challenge.params["realm"] == 'say "hi" \\ bye'


def test_multiple_challenges_in_one_value() -> None:
    value = 'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"'
    assert parse_challenges(value) == [
        Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
        Challenge("basic", {"realm": "simple"}),
    ]


def test_scheme_without_params_followed_by_another() -> None:
    assert parse_challenges("Negotiate, Basic realm=x") == [Challenge("negotiate"), Challenge("basic", {"realm": "x"})]


def test_token68() -> None:
    assert parse_challenges("Negotiate YWJjZA==") == [Challenge("negotiate", token68="YWJjZA==")]
    assert parse_challenges("Negotiate abc=, Basic realm=r") == [
        Challenge("negotiate", token68="abc="),
        Challenge("basic", {"realm": "r"}),
    ]


def test_whitespace_around_equals_and_commas() -> None:
    (challenge,) = parse_challenges('Bearer  realm = "r" ,  service= s ,,')
    assert challenge.params == {"realm": "r", "service": "s"}


def test_unquoted_scope_with_colons_is_accepted() -> None:
    # Seen in the wild: values that are not RFC tokens, unquoted.
    (challenge,) = parse_challenges("Bearer realm=https://a/token,scope=repository:x/y:pull")
    assert challenge.params == {"realm": "https://a/token", "scope": "repository:x/y:pull"}


def test_empty_value_means_no_challenges() -> None:
    assert parse_challenges("") == []
    assert parse_challenges(" , ") == []


def test_first_duplicate_parameter_wins() -> None:
    (challenge,) = parse_challenges('Basic realm="a", realm="b"')
    assert challenge.params["realm"] == "a"


@pytest.mark.parametrize(
    "value",
    [
        'Bearer realm="unterminated',
        '="x"',
        'Bearer realm="a" junk',
        "Bearer @@@",
        'Basic realm="x\\',
        "Bea(rer realm=x",
    ],
)
def test_malformed_raises_challenge_error(value: str) -> None:
    with pytest.raises(ChallengeError):
        parse_challenges(value)


def test_challenge_error_is_a_regtool_protocol_error() -> None:
    from regtool.errors import ProtocolError

    assert issubclass(ChallengeError, ProtocolError)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from([*'abcXYZ019 ,="\\\t-._~+/:@(){}', "é"]), max_size=60))
def test_never_raises_anything_else(value: str) -> None:
    try:
        challenges = parse_challenges(value)
    except ChallengeError:
        return
    for challenge in challenges:
        assert challenge.scheme == challenge.scheme.lower()
        assert all(name == name.lower() for name in challenge.params)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,8}", fullmatch=True),
            st.dictionaries(
                st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
                st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
                min_size=1,
                max_size=4,
            ),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_round_trip_of_quoted_parameters(spec: list[tuple[str, dict[str, str]]]) -> None:
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    value = ", ".join(f"{scheme} " + ", ".join(f"{k}={quote(v)}" for k, v in params.items()) for scheme, params in spec)
    assert parse_challenges(value) == [Challenge(scheme.lower(), params) for scheme, params in spec]
