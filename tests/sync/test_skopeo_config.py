"""skopeo sync's YAML source file: accepted as skopeo writes it, unknown keys refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from regtool.client.sync.endpoints import RegistryEndpoint
from regtool.client.sync.skopeo_config import load_skopeo_config, parse_skopeo_config
from regtool.errors import UsageError

# The example of skopeo-sync(1), with skopeo's own spelling of every key.
SKOPEO_EXAMPLE = """\
docker.io:
    images:
        busybox: []
        redis:
            - "1.0"
            - "2.0"
    images-by-tag-regex:
        nginx: ^1\\.13\\.[12]-alpine-perl$
    images-by-semver:
        alpine: ">= 3.12.0"
    credentials:
        username: john
        password: this is a secret
    tls-verify: true
    cert-dir: /home/john/certs
quay.io:
    tls-verify: false
    images:
        coreos/etcd:
            - latest
"""


def test_skopeos_own_example_is_read_as_is() -> None:
    config = parse_skopeo_config(SKOPEO_EXAMPLE, where="sync.yaml")
    by_repo = {(s.endpoint, s.repository): s for s in config.sources}
    hub, quay = RegistryEndpoint("docker.io"), RegistryEndpoint("quay.io")
    assert set(by_repo) == {(hub, "busybox"), (hub, "redis"), (hub, "nginx"), (hub, "alpine"), (quay, "coreos/etcd")}
    assert by_repo[hub, "busybox"].tags.names is None  # an empty list: every tag
    assert by_repo[hub, "redis"].tags.select(["1.0", "2.0", "3.0"]) == ["1.0", "2.0"]
    assert by_repo[hub, "nginx"].tags.select(["1.13.1-alpine-perl", "1.13.3-alpine-perl", "x1.13.2-alpine-perl"]) == [
        "1.13.1-alpine-perl"
    ]
    assert by_repo[hub, "alpine"].tags.select(["3.11.9", "3.12.0", "3.19.1", "edge"]) == ["3.12.0", "3.19.1"]
    credentials = by_repo[hub, "busybox"].credentials
    assert credentials is not None and (credentials.username, credentials.password) == ("john", "this is a secret")
    assert by_repo[quay, "coreos/etcd"].credentials is None
    assert config.insecure_registries == ("quay.io",)
    # cert-dir is accepted and said not to be honoured.
    assert len(config.warnings) == 1 and "cert-dir is not honoured" in config.warnings[0]


def test_a_tag_regex_searches_as_skopeo_does() -> None:
    config = parse_skopeo_config("r.example:\n  images-by-tag-regex:\n    app: '1\\.2'\n", where="f")
    assert config.sources[0].tags.select(["1.2.0", "v1.2", "1.3", "11x2"]) == ["1.2.0", "v1.2"]


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("r.example:\n  images: {app: []}\n  image-by-tag: {}\n", ["r.example", "unknown key 'image-by-tag'"]),
        ("r.example:\n  images: {app: []}\n  tls_verify: false\n  foo: 1\n", ["unknown keys 'tls_verify', 'foo'"]),
        ("r.example:\n  images: {app: []}\n  credentials: {user: a, password: b}\n", ["credentials", "'user'"]),
        ("r.example:\n  images: {app: ['sha256:" + "a" * 64 + "']}\n", ["app", "digests are not synced"]),
        ("r.example:\n  images: {App: []}\n", ["invalid repository name 'App'"]),
        ("r.example:\n  images-by-semver: {app: '>= banana'}\n", ["images-by-semver: app", "not a version"]),
        ("r.example:\n  images-by-tag-regex: {app: '(('}\n", ["images-by-tag-regex: app", "invalid regular"]),
        ("r.example:\n  tls-verify: maybe\n  images: {app: []}\n", ["tls-verify"]),
        ("r.example:\n  tls-verify: true\n", ["names no images"]),
        ("- r.example\n", ["expected a mapping of registries"]),
        ("r.example: [\n", ["line"]),
    ],
)
def test_bad_files_are_refused_naming_the_file_and_the_key(text: str, fragments: list[str]) -> None:
    with pytest.raises(UsageError) as caught:
        parse_skopeo_config(text, where="sync.yaml")
    message = str(caught.value)
    assert message.startswith("sync.yaml")
    for fragment in fragments:
        assert fragment in message


def test_an_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the sync file"):
        load_skopeo_config(tmp_path / "absent.yaml")


def test_a_registry_key_with_a_path_puts_its_repositories_below_it() -> None:
    # skopeo names each image REGISTRY/IMAGE, so the key may carry a path.
    config = parse_skopeo_config(
        "host:5000/team:\n  images:\n    app: []\n  images-by-semver:\n    web: '>= 1'\n", where="f"
    )
    assert [(s.endpoint, s.repository) for s in config.sources] == [
        (RegistryEndpoint("host:5000"), "team/app"),
        (RegistryEndpoint("host:5000"), "team/web"),
    ]


def test_a_tag_regex_keeps_its_leading_flags() -> None:
    config = parse_skopeo_config("r.example:\n  images-by-tag-regex:\n    app: '(?i)^v1'\n", where="f")
    assert config.sources[0].tags.select(["v1.0", "V1.2", "xv1", "2"]) == ["v1.0", "V1.2"]


def test_docker_hub_names_of_one_component_are_asked_for_as_official_images() -> None:
    config = parse_skopeo_config("docker.io:\n  images:\n    busybox: []\n    team/app: []\n", where="f")
    asked = [str(s.endpoint.reference(s.repository, "1")) for s in config.sources]
    assert asked == ["docker.io/library/busybox:1", "docker.io/team/app:1"]
    assert [s.repository for s in config.sources] == ["busybox", "team/app"], "the target keeps the name as written"


def test_a_dest_naming_a_tag_is_refused_not_dropped(tmp_path: Path) -> None:
    from tests.cli.support import regtool

    done = regtool("sync", "127.0.0.1:1/team/app", "127.0.0.1:2/mirror:foo", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "error: DEST: '127.0.0.1:2/mirror:foo' names a tag; DEST is REGISTRY[/PREFIX] (each image keeps its tag)\n"
    )


def test_unquoted_numeric_tags_and_passwords_keep_their_text_as_skopeo_reads_them() -> None:
    # skopeo's decoder fills string fields with the scalar's text: 1.10 is the tag "1.10", not the float 1.1.
    config = parse_skopeo_config(
        "127.0.0.1:5000:\n"
        "  tls-verify: false\n"
        "  images:\n"
        "    team/app: [1.0, 1.10, 2, 2024-01-02]\n"
        "  credentials: {username: robot, password: 12345}\n",
        where="sync.yaml",
    )
    (source,) = config.sources
    assert source.tags.names == ("1.0", "1.10", "2", "2024-01-02")
    assert source.credentials is not None and source.credentials.password == "12345"
    assert config.insecure_registries == ("127.0.0.1:5000",)
