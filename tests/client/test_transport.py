"""Transport rules: which schemes are tried, error mapping that names the URL and never credentials."""

from __future__ import annotations

import httpx
import pytest

from regtool.client.net.auth import Credentials, request_scopes
from regtool.client.net.transport import candidate_schemes, mapped_errors, redact_url
from regtool.errors import TransportError


@pytest.mark.parametrize(
    ("registry", "plain_http", "insecure", "expected"),
    [
        ("registry.example", False, False, ("https",)),
        ("registry.example:5000", False, True, ("https", "http")),
        ("registry.example", True, False, ("http",)),
        ("localhost:5000", False, False, ("https", "http")),
        ("127.0.0.1:5000", False, False, ("https", "http")),
        ("127.1.2.3", False, False, ("https", "http")),
        ("[::1]:5000", False, False, ("https", "http")),
        ("10.0.0.1:5000", False, False, ("https",)),
    ],
)
def test_candidate_schemes(registry: str, plain_http: bool, insecure: bool, expected: tuple[str, ...]) -> None:
    assert candidate_schemes(registry, plain_http=plain_http, insecure=insecure) == expected


def test_redact_url_drops_userinfo() -> None:
    assert redact_url("https://bob:secret@reg.example:5000/v2/?x=1#frag") == "https://reg.example:5000/v2/?x=1"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), "cannot connect"),
        (httpx.ReadTimeout("slow"), "timed out"),
        (httpx.RemoteProtocolError("eof"), "connection broken"),
    ],
)
def test_mapped_errors(exc: Exception, kind: str) -> None:
    with pytest.raises(TransportError) as caught, mapped_errors("GET", "https://u:pw@reg.example/v2/"):
        raise exc
    message = str(caught.value)
    assert message.startswith("GET https://reg.example/v2/: ") and kind in message and "pw" not in message
    assert caught.value.exit_code == 6


def test_credentials_repr_hides_password() -> None:
    assert "hunter2" not in repr(Credentials("alice", "hunter2"))


@pytest.mark.parametrize(
    ("method", "url", "scopes"),
    [
        ("GET", "https://r/v2/team/app/manifests/1", ("repository:team/app:pull",)),
        ("HEAD", "https://r/v2/a/b/c/blobs/sha256:00", ("repository:a/b/c:pull",)),
        ("PUT", "https://r/v2/team/app/manifests/1", ("repository:team/app:pull,push",)),
        ("PATCH", "https://r/v2/team/app/blobs/uploads/x", ("repository:team/app:pull,push",)),
        ("DELETE", "https://r/v2/team/app/manifests/sha256:00", ("repository:team/app:delete",)),
        (
            "POST",
            "https://r/v2/team/app/blobs/uploads/?mount=sha256:00&from=other/repo",
            ("repository:team/app:pull,push", "repository:other/repo:pull"),
        ),
        ("GET", "https://r/v2/_catalog?n=10", ("registry:catalog:*",)),
        ("GET", "https://r/v2/", ()),
        ("GET", "https://r/v2/team/app/tags/list", ("repository:team/app:pull",)),
        # A repository name may hold an endpoint's word as one of its components.
        ("GET", "https://r/v2/org/manifests/app/manifests/latest", ("repository:org/manifests/app:pull",)),
        ("PUT", "https://r/v2/team/blobs/store/blobs/uploads/abc", ("repository:team/blobs/store:pull,push",)),
        ("GET", "https://r/v2/a/tags/b/referrers/sha256:00", ("repository:a/tags/b:pull",)),
    ],
)
def test_request_scopes(method: str, url: str, scopes: tuple[str, ...]) -> None:
    assert request_scopes(httpx.Request(method, url)) == scopes
