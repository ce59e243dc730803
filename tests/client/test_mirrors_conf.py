"""registries.conf (containers-registries.conf(5)) parsing and the endpoints a reference resolves to."""

from __future__ import annotations

from pathlib import Path

import pytest

from regtool.client.mirrors import (
    Endpoint,
    load_registries_conf,
    parse_mirror_url,
    parse_registries_conf,
)
from regtool.errors import UsageError
from regtool.reference import Reference

DIGEST = "sha256:" + "ab" * 32


def names(endpoints: tuple[Endpoint, ...]) -> list[str]:
    return [str(e.ref) for e in endpoints]


def test_man_page_example_mirrors_in_order_then_rewritten_primary() -> None:
    conf = parse_registries_conf(
        """
unqualified-search-registries = ["example.com"]

[[registry]]
prefix = "example.com/foo"
insecure = false
blocked = false
location = "internal-registry-for-example.com/bar"

[[registry.mirror]]
location = "example-mirror-0.local/mirror-for-foo"

[[registry.mirror]]
location = "example-mirror-1.local/mirrors/foo"
insecure = true
"""
    )
    endpoints = conf.pull_endpoints(Reference.parse("example.com/foo/image:latest"))
    assert names(endpoints) == [
        "example-mirror-0.local/mirror-for-foo/image:latest",
        "example-mirror-1.local/mirrors/foo/image:latest",
        "internal-registry-for-example.com/bar/image:latest",
    ]
    assert [(e.mirror, e.insecure) for e in endpoints] == [(True, False), (True, True), (False, False)]


def test_longest_prefix_wins_and_boundaries_are_respected() -> None:
    conf = parse_registries_conf(
        """
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "hub-mirror.local:5000"

[[registry]]
prefix = "docker.io/library/app"
location = "apps.local/hub/app"

[[registry]]
prefix = "reg.local/team"
location = "other.local/t"
"""
    )
    # docker.io/library/app matches the longer prefix: no mirror, rewritten primary.
    assert names(conf.pull_endpoints(Reference.parse("app:1"))) == ["apps.local/hub/app:1"]
    # ... but docker.io/library/application only the registry-wide one (no match inside a path component).
    assert names(conf.pull_endpoints(Reference.parse("application:2"))) == [
        "hub-mirror.local:5000/library/application:2",
        "docker.io/library/application:2",
    ]
    assert names(conf.pull_endpoints(Reference.parse("reg.local/teams/x:1"))) == ["reg.local/teams/x:1"]
    assert names(conf.pull_endpoints(Reference.parse("reg.local/team/x:1"))) == ["other.local/t/x:1"]
    # A reference no prefix matches stays as it is.
    assert names(conf.pull_endpoints(Reference.parse("quay.io/a/b:1"))) == ["quay.io/a/b:1"]


def test_prefix_with_tag_and_wildcard_hosts() -> None:
    conf = parse_registries_conf(
        """
[[registry]]
prefix = "reg.local/app:pinned"
location = "frozen.local/app:v1"

[[registry]]
prefix = "*.corp.example"
[[registry.mirror]]
location = "cache.local"
"""
    )
    assert names(conf.pull_endpoints(Reference.parse("reg.local/app:pinned"))) == ["frozen.local/app:v1"]
    assert names(conf.pull_endpoints(Reference.parse("reg.local/app:other"))) == ["reg.local/app:other"]
    assert names(conf.pull_endpoints(Reference.parse("a.b.corp.example/x/y:1"))) == [
        "cache.local/x/y:1",
        "a.b.corp.example/x/y:1",
    ]
    # The wildcard matches the host name; a port stays with the rest of the name, as in containers/image.
    assert names(conf.pull_endpoints(Reference.parse("a.corp.example:5000/x/y:1"))) == [
        "cache.local:5000/x/y:1",
        "a.corp.example:5000/x/y:1",
    ]
    assert names(conf.pull_endpoints(Reference.parse("corp.example/x/y:1"))) == ["corp.example/x/y:1"]


def test_pull_from_mirror_digest_only_and_tag_only() -> None:
    conf = parse_registries_conf(
        """
[[registry]]
location = "reg.local"
[[registry.mirror]]
location = "by-digest.local"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "by-tag.local"
pull-from-mirror = "tag-only"
[[registry.mirror]]
location = "any.local"
"""
    )
    assert names(conf.pull_endpoints(Reference.parse("reg.local/a:1"))) == [
        "by-tag.local/a:1",
        "any.local/a:1",
        "reg.local/a:1",
    ]
    assert names(conf.pull_endpoints(Reference.parse(f"reg.local/a@{DIGEST}"))) == [
        f"by-digest.local/a@{DIGEST}",
        f"any.local/a@{DIGEST}",
        f"reg.local/a@{DIGEST}",
    ]
    legacy = parse_registries_conf(
        '[[registry]]\nlocation = "reg.local"\nmirror-by-digest-only = true\n'
        '[[registry.mirror]]\nlocation = "m.local"\n'
    )
    assert names(legacy.pull_endpoints(Reference.parse("reg.local/a:1"))) == ["reg.local/a:1"]


def test_blocked_refuses_naming_the_file_and_prefix() -> None:
    conf = parse_registries_conf(
        '[[registry]]\nprefix = "bad.local"\nlocation = "bad.local"\nblocked = true\n', source="/etc/x.conf"
    )
    with pytest.raises(
        UsageError, match=r"pulling bad.local/a:1 is blocked by /etc/x.conf \(\[\[registry\]\] prefix 'bad.local'\)"
    ):
        conf.pull_endpoints(Reference.parse("bad.local/a:1"))


def test_mirror_option_comes_first_for_every_registry() -> None:
    conf = parse_registries_conf('[[registry]]\nlocation = "docker.io"\n[[registry.mirror]]\nlocation = "conf.local"\n')
    conf = conf.with_mirrors([parse_mirror_url("http://127.0.0.1:5001"), parse_mirror_url("https://m.local/cache/")])
    endpoints = conf.pull_endpoints(Reference.parse("app:1"))
    assert names(endpoints) == [
        "127.0.0.1:5001/library/app:1",
        "m.local/cache/library/app:1",
        "conf.local/library/app:1",
        "docker.io/library/app:1",
    ]
    assert [e.insecure for e in endpoints] == [True, False, False, False]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[registries.search]\nregistries = ['a.local']\n", r"version 1 format .* \[\[registry\]\] tables"),
        ("[[registry]]\nlocation = 'http://a.local'\n", r"#1: location 'http://a.local' takes no URI scheme"),
        ("[[registry]]\nprefix = 'a.local'\n", r"#1: location is unset and prefix 'a.local' is no \*\.example\.com"),
        ("[[registry]]\nlocation = 'a.local'\ninsecure = 'yes'\n", r"#1: insecure must be true or false, got 'yes'"),
        (
            "[[registry]]\nlocation = 'a.local'\n[[registry.mirror]]\nlocation = 'm.local'\npull-from-mirror = 'x'\n",
            r"#1, \[\[registry.mirror\]\] #1: pull-from-mirror must be all, digest-only or tag-only, got 'x'",
        ),
        (
            "[[registry]]\nlocation = 'a.local'\n[[registry.mirror]]\ninsecure = true\n",
            r"mirror\]\] #1: location is unset",
        ),
        ("[[registry]]\nprefix = '*.a.local/x'\n", r"wildcard prefix is a host only"),
        ("[[registry]]\nlocation = 'A B'\n", r"invalid location 'A B'"),
        ("[[registry]\n", r"not valid TOML"),
    ],
)
def test_bad_files_are_refused_with_one_line(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        parse_registries_conf(text, source="conf")
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("conf")


def test_lookup_order_and_explicit_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "xdg" / "containers" / "registries.conf"
    user.parent.mkdir(parents=True)
    user.write_text('[[registry]]\nlocation = "a.local"\n[[registry.mirror]]\nlocation = "user.local"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    conf = load_registries_conf()
    assert conf.source == str(user)
    assert names(conf.pull_endpoints(Reference.parse("a.local/x:1"))) == ["user.local/x:1", "a.local/x:1"]
    with pytest.raises(UsageError, match=r"registries\.conf file not found: .*missing\.conf"):
        load_registries_conf(tmp_path / "missing.conf")
