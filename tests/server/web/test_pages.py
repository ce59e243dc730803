"""The web view over HTTP, as curl sees it: content, links without JavaScript, auth filtering, CSRF, read-only."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from tests.server.helpers import push_blob, push_manifest
from tests.server.web.conftest import ATTESTATION_TYPE, PASSWORDS, SBOM_TYPE, SIGNATURE_TYPE, Populated
from tests.support.images import image_manifest
from tests.support.serve import RunningServe, run_serve

HREF = re.compile(r'href="([^"]+)"')


def links(page: str) -> list[str]:
    return [html.unescape(h) for h in HREF.findall(page)]


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "no delete form on the page"
    return found.group(1)


def short(digest: str) -> str:
    return digest[: len("sha256:") + 12]


# -- content ----------------------------------------------------------------------------------------------------


def test_repositories_page_lists_every_repository_and_filters(open_serve: RunningServe) -> None:
    page = httpx.get(f"{open_serve.url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for name in ("alice/secret", "bob/tool", "team/app", "team/multi"):
        assert f'href="/repo/{name}"' in page.text
    filtered = httpx.get(f"{open_serve.url}/", params={"q": "TEAM"}).text
    assert "team/app" in filtered and "team/multi" in filtered
    assert "alice/secret" not in filtered and "bob/tool" not in filtered
    assert "No repository matches" in httpx.get(f"{open_serve.url}/", params={"q": "zzz"}).text


def test_tags_page_shows_digest_type_size_platforms_and_push_time(
    open_serve: RunningServe, populated: Populated
) -> None:
    page = httpx.get(f"{open_serve.url}/repo/team/app").text
    row = re.search(r'<tr data-tag="1.0">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = row.group(1)
    assert short(populated.app_digest) in cells
    assert "OCI manifest" in cells
    app = populated.app
    total = app.manifest.size + len(app.config) + sum(len(layer) for layer in app.layers)
    assert f'title="{total} bytes"' in cells
    assert "linux/amd64" in cells
    assert re.search(r"<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>", cells)
    assert 'data-tag="latest"' in page

    multi = httpx.get(f"{open_serve.url}/repo/team/multi").text
    row = re.search(r'<tr data-tag="v2">(.*?)</tr>', multi, re.S)
    assert row is not None
    assert "OCI index" in row.group(1)
    assert "linux/amd64, linux/arm64/v8" in row.group(1)


def test_image_page_shows_config_layers_history_commands_and_referrer_tree(
    open_serve: RunningServe, populated: Populated
) -> None:
    response = httpx.get(f"{open_serve.url}/repo/team/app/-/manifest/1.0")
    assert response.status_code == 200
    page = html.unescape(response.text)
    assert populated.app_digest in page
    assert '["/bin/app", "--serve"]' in page
    assert "APP_MODE=production" in page
    assert "maintainer</code> = team@example.com" in page
    assert "layer 0" in page and "layer 1" in page  # history's created_by
    for layer in populated.app.layers:
        assert f'title="{len(layer)} bytes"' in page
    host = open_serve.host
    assert f"regtool pull {host}/team/app:1.0" in page
    assert f"docker pull {host}/team/app:1.0" in page
    assert f"docker pull {host}/team/app@{populated.app_digest}" in page
    # The tree: signature and SBOM under the image, the attestation under the SBOM.
    tree = page[page.index('<div id="referrers">') :]
    assert "3 manifests refer to this one" in page
    assert tree.index(SBOM_TYPE) < tree.index(short(populated.sbom_digest)) < tree.index(ATTESTATION_TYPE)
    assert tree.index(ATTESTATION_TYPE) < tree.index(short(populated.attestation_digest))
    assert SIGNATURE_TYPE in tree and short(populated.signature_digest) in tree
    for kind in ("signature", "SBOM", "attestation"):
        assert f">{kind}</span>" in tree

    referrer = httpx.get(f"{open_serve.url}/repo/team/app/-/manifest/{populated.sbom_digest}")
    assert referrer.status_code == 200
    assert 'id="subject"' in referrer.text and short(populated.app_digest) in referrer.text
    assert SBOM_TYPE in referrer.text


def test_index_page_lists_platforms_linking_to_each_image(open_serve: RunningServe, populated: Populated) -> None:
    page = httpx.get(f"{open_serve.url}/repo/team/multi/-/manifest/v2").text
    assert populated.multi_digest in page
    platforms = page[page.index('<table id="platforms">') :]
    child_links = [link for link in links(platforms) if "/-/manifest/sha256:" in link]
    assert len(child_links) == 2
    assert "linux/amd64" in platforms and "linux/arm64/v8" in platforms
    child = httpx.get(open_serve.url + child_links[1])
    assert child.status_code == 200 and "linux/arm64/v8" in child.text


def test_every_link_works_without_javascript(open_serve: RunningServe) -> None:
    """Follow every link from / (as curl would) and check that nothing is broken or fails."""
    seen: set[str] = set()
    queue = ["/"]
    with httpx.Client(base_url=open_serve.url) as client:
        while queue and len(seen) < 80:
            path = queue.pop()
            if path in seen:
                continue
            seen.add(path)
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            if response.headers["content-type"].startswith("text/html"):
                queue += [link for link in links(response.text) if link.startswith("/") and link not in seen]
    assert any("/-/manifest/" in path for path in seen)
    assert "/-/static/style.css" in seen


def test_pages_carry_a_strict_content_security_policy(open_serve: RunningServe) -> None:
    response = httpx.get(f"{open_serve.url}/")
    policy = response.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None and f'<script nonce="{nonce.group(1)}">' in response.text
    assert "default-src 'none'" in policy and "http" not in policy  # nothing from anywhere else
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def test_bad_input_gets_an_html_error_never_a_500(open_serve: RunningServe) -> None:
    cases = {
        "/repo/UPPER/case": 400,
        "/repo/team/app/-/manifest/sha256:zz": 400,
        "/repo/team/app/-/manifest/bad%20tag": 400,
        "/repo/team/app/-/manifest/2.0": 404,
        "/repo/team/app/-/manifest/sha256:" + "0" * 64: 404,
        "/repo/no/such": 404,
        "/repo/team/app?page=-3": 200,
        "/repo/team/app?page=99999999999999": 200,
        "/?page=abc&q=" + "x" * 5000: 200,
        "/repo/team/app/-/delete": 400,  # a GET is not a delete: the path is read as an invalid name
        "/repo/%00": 400,
    }
    with httpx.Client(base_url=open_serve.url) as client:
        for path, status in cases.items():
            response = client.get(path)
            assert response.status_code == status, (path, response.status_code, response.text[:200])
            assert response.headers["content-type"].startswith("text/html"), path
        for body, content_type in [
            (b"reference=1.0", "text/plain"),
            (b"\xff\xfe=\xff", "application/x-www-form-urlencoded"),
            (b"a=" + b"x" * 100_000, "application/x-www-form-urlencoded"),
            (b"", "application/x-www-form-urlencoded"),
        ]:
            response = client.post("/repo/team/app/-/delete", content=body, headers={"Content-Type": content_type})
            assert 400 <= response.status_code < 500, (body[:20], response.status_code)
        assert client.get("/v2/team/app/manifests/1.0").status_code == 200


# -- deletes and CSRF ---------------------------------------------------------------------------------------------


def test_delete_a_tag_through_the_form(open_serve: RunningServe) -> None:
    with httpx.Client(base_url=open_serve.url) as client:
        page = client.get("/repo/team/app")
        assert "regtool_csrf" in client.cookies
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        response = client.post("/repo/team/app/-/delete", data={"csrf": csrf_of(page.text), "reference": "latest"})
        assert response.status_code == 303
        assert response.headers["location"] == "/repo/team/app?deleted=latest"
        after = client.get(response.headers["location"]).text
        assert "Deleted <code>latest</code>" in after and 'data-tag="latest"' not in after
        assert client.get("/v2/team/app/manifests/latest").status_code == 404
        assert client.get("/v2/team/app/manifests/1.0").status_code == 200


def test_delete_a_manifest_by_digest_removes_its_tags(open_serve: RunningServe, populated: Populated) -> None:
    with httpx.Client(base_url=open_serve.url) as client:
        page = client.get("/repo/team/app/-/manifest/1.0").text
        assert f'name="reference" value="{populated.app_digest}"' in page
        data = {"csrf": csrf_of(page), "reference": populated.app_digest}
        assert client.post("/repo/team/app/-/delete", data=data).status_code == 303
        assert client.get(f"/v2/team/app/manifests/{populated.app_digest}").status_code == 404
        assert client.get("/v2/team/app/manifests/1.0").status_code == 404


def test_forms_without_a_valid_csrf_token_are_refused(open_serve: RunningServe) -> None:
    with httpx.Client(base_url=open_serve.url) as client:
        token = csrf_of(client.get("/repo/team/app").text)
        cookie = client.cookies["regtool_csrf"]
        attempts = [
            ({}, {"reference": "latest"}),  # no token, no cookie
            ({"regtool_csrf": cookie}, {"reference": "latest"}),  # cookie but no token
            ({}, {"reference": "latest", "csrf": token}),  # token without its cookie
            ({"regtool_csrf": "a" * 64}, {"reference": "latest", "csrf": token}),  # another cookie
            ({"regtool_csrf": cookie}, {"reference": "latest", "csrf": "0" * 64}),  # a forged token
        ]
        for cookies, data in attempts:
            with httpx.Client(base_url=open_serve.url, cookies=cookies) as other:
                response = other.post("/repo/team/app/-/delete", data=data)
                assert response.status_code == 403, (cookies, data)
                assert "not deleted" in response.text
        # The right token and cookie, but from a page on another site.
        response = client.post(
            "/repo/team/app/-/delete",
            data={"reference": "latest", "csrf": token},
            headers={"Origin": "http://evil.example"},
        )
        assert response.status_code == 403
        assert client.get("/v2/team/app/manifests/latest").status_code == 200


def test_read_only_registry_shows_no_delete_and_refuses_one(populated: Populated) -> None:
    with run_serve(populated.root, read_only=True) as server, httpx.Client(base_url=server.url) as client:
        for path in ("/repo/team/app", "/repo/team/app/-/manifest/1.0"):
            page = client.get(path).text
            assert 'name="csrf"' not in page and "Delete" not in page
            assert "read-only" in page
        # A token from a writable page of the same visitor cannot exist here; a hand-made form is refused anyway.
        response = client.post("/repo/team/app/-/delete", data={"reference": "latest", "csrf": "0" * 64})
        assert response.status_code == 403
        assert client.get("/v2/team/app/manifests/latest").status_code == 200


# -- auth ---------------------------------------------------------------------------------------------------------


def test_catalog_lists_only_what_the_caller_may_pull(acl_serve: RunningServe) -> None:
    bob = httpx.get(f"{acl_serve.url}/v2/_catalog", auth=("bob", PASSWORDS["bob"])).json()
    assert bob["repositories"] == ["bob/tool", "team/app", "team/multi"]
    alice = httpx.get(f"{acl_serve.url}/v2/_catalog", auth=("alice", PASSWORDS["alice"])).json()
    assert alice["repositories"] == ["alice/secret", "bob/tool", "team/app", "team/multi"]
    paged = httpx.get(f"{acl_serve.url}/v2/_catalog?n=2", auth=("bob", PASSWORDS["bob"]))
    assert paged.json()["repositories"] == ["bob/tool", "team/app"]
    assert "last=team%2Fapp" in paged.headers["link"]
    assert httpx.get(f"{acl_serve.url}/v2/_catalog").status_code == 401


def test_v1_search_lists_only_what_the_caller_may_pull(acl_serve: RunningServe) -> None:
    alice = ("alice", PASSWORDS["alice"])
    for name in ("alice/private", "bob/v1tool"):
        assert httpx.put(f"{acl_serve.url}/v1/repositories/{name}/", json=[], auth=alice).status_code == 200

    def found(auth: tuple[str, str] | None) -> list[str]:
        response = httpx.get(f"{acl_serve.url}/v1/search", params={"q": "/"}, auth=auth)
        assert response.status_code == 200
        return [r["name"] for r in response.json()["results"]]

    assert found(alice) == ["alice/private", "bob/v1tool"]
    assert found(("bob", PASSWORDS["bob"])) == ["bob/v1tool"]
    assert found(None) == []


def test_catalog_under_token_auth_lists_only_what_the_caller_may_pull(populated: Populated) -> None:
    with run_serve(populated.root, htpasswd=populated.htpasswd, auth_acl=populated.acl, token_auth=True) as server:
        token = httpx.get(
            f"{server.url}/token",
            params={"service": "regtool", "scope": "registry:catalog:*"},
            auth=("bob", PASSWORDS["bob"]),
        ).json()["token"]
        catalog = httpx.get(f"{server.url}/v2/_catalog", headers={"Authorization": f"Bearer {token}"})
        assert catalog.status_code == 200
        assert catalog.json()["repositories"] == ["bob/tool", "team/app", "team/multi"]


def test_pages_ask_for_credentials_and_show_only_what_the_user_may_pull(acl_serve: RunningServe) -> None:
    anonymous = httpx.get(f"{acl_serve.url}/")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic realm=")
    assert "Sign-in required" in anonymous.text
    assert httpx.get(f"{acl_serve.url}/-/login").status_code == 401
    assert httpx.get(f"{acl_serve.url}/", auth=("bob", "wrong")).status_code == 401

    bob = ("bob", PASSWORDS["bob"])
    page = httpx.get(f"{acl_serve.url}/", auth=bob).text
    assert 'signed in as <strong id="user">bob</strong>' in page
    assert "bob/tool" in page and "team/app" in page and "alice/secret" not in page
    denied = httpx.get(f"{acl_serve.url}/repo/alice/secret", auth=bob)
    assert denied.status_code == 403 and "alice/secret" in denied.text
    assert httpx.get(f"{acl_serve.url}/repo/alice/secret/-/manifest/1", auth=bob).status_code == 403
    # bob may pull team/* but not delete there: no delete buttons; bob/* he may delete.
    assert 'name="csrf"' not in httpx.get(f"{acl_serve.url}/repo/team/app", auth=bob).text
    assert 'name="csrf"' in httpx.get(f"{acl_serve.url}/repo/bob/tool", auth=bob).text
    login = httpx.get(f"{acl_serve.url}/-/login", auth=bob)
    assert login.status_code == 303 and login.headers["location"] == "/"

    alice = httpx.get(f"{acl_serve.url}/", auth=("alice", PASSWORDS["alice"])).text
    assert "alice/secret" in alice


def test_a_user_without_delete_rights_cannot_delete_with_a_valid_form(acl_serve: RunningServe) -> None:
    bob = ("bob", PASSWORDS["bob"])
    with httpx.Client(base_url=acl_serve.url, auth=bob) as client:
        token = csrf_of(client.get("/repo/bob/tool").text)
        response = client.post("/repo/team/app/-/delete", data={"csrf": token, "reference": "latest"})
        assert response.status_code == 403
        assert client.get("/v2/team/app/manifests/latest").status_code == 200
        # A token is bound to its user: alice's browser cannot replay bob's form.
        with httpx.Client(base_url=acl_serve.url, auth=("alice", PASSWORDS["alice"])) as alice:
            alice.cookies.update(client.cookies)
            replay = alice.post("/repo/team/app/-/delete", data={"csrf": token, "reference": "latest"})
            assert replay.status_code == 403
        assert client.post("/repo/bob/tool/-/delete", data={"csrf": token, "reference": "1"}).status_code == 303
        assert client.get("/v2/bob/tool/manifests/1").status_code == 404


def test_token_auth_registry_takes_basic_credentials_on_the_pages(populated: Populated) -> None:
    with run_serve(populated.root, htpasswd=populated.htpasswd, auth_acl=populated.acl, token_auth=True) as server:
        anonymous = httpx.get(f"{server.url}/")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic ")
        page = httpx.get(f"{server.url}/", auth=("bob", PASSWORDS["bob"])).text
        assert "team/app" in page and "alice/secret" not in page
        assert httpx.get(f"{server.url}/repo/alice/secret", auth=("bob", PASSWORDS["bob"])).status_code == 403
        assert httpx.get(f"{server.url}/repo/alice/secret", auth=("alice", PASSWORDS["alice"])).status_code == 200
        # The API itself still wants tokens.
        assert httpx.get(f"{server.url}/v2/team/app/tags/list", auth=("bob", PASSWORDS["bob"])).status_code == 401


def test_anonymous_pull_shows_pages_without_a_sign_in(populated: Populated) -> None:
    with run_serve(populated.root, htpasswd=populated.htpasswd, anonymous_pull=True) as server:
        page = httpx.get(f"{server.url}/")
        assert page.status_code == 200 and "team/app" in page.text
        assert 'id="login"' in page.text
        tags = httpx.get(f"{server.url}/repo/team/app").text
        assert "data-tag" in tags and 'name="csrf"' not in tags


# -- configuration ------------------------------------------------------------------------------------------------


def test_no_web_answers_404_at_the_root(populated: Populated) -> None:
    with run_serve(populated.root, web=False) as server:
        response = httpx.get(f"{server.url}/")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/json")
        assert httpx.get(f"{server.url}/v2/").status_code == 200


def test_web_prefix_moves_the_pages_and_leaves_the_apis_alone(populated: Populated) -> None:
    with run_serve(populated.root, web_prefix="/ui") as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/").status_code == 404
        assert client.get("/ui").headers["location"] == "/ui/"
        page = client.get("/ui/").text
        assert 'href="/ui/repo/team/app"' in page and 'href="/ui/-/static/style.css"' in page
        tags = client.get("/ui/repo/team/app")
        assert tags.status_code == 200 and 'action="/ui/repo/team/app/-/delete"' in tags.text
        assert client.get("/v2/").status_code == 200
        assert client.get("/v1/_ping").status_code == 200


def test_a_repository_with_1000_tags_is_paginated(tmp_path: Path) -> None:
    built = image_manifest([{"a.txt": b"a"}])
    with run_serve(tmp_path / "registry") as server, httpx.Client(base_url=server.url) as client:
        for data in built.blobs.values():
            push_blob(client, "big/repo", data)
        raw = built.manifest.raw
        # Distinct manifests (an annotation each), so every row is its own digest and summary.
        for i in range(1000):
            body = raw[:-1] + f', "annotations": {{"n": "{i}"}}}}'.encode()
            assert push_manifest(client, "big/repo", f"t{i:04d}", body, mt.OCI_MANIFEST).status_code == 201
        started = time.perf_counter()
        first = client.get("/repo/big/repo")
        elapsed = time.perf_counter() - started
        assert first.status_code == 200
        assert first.text.count('<tr data-tag="') == 100
        assert "page 1 of 10 (1000 tags)" in first.text
        assert 'href="/repo/big/repo?page=2"' in first.text
        last = client.get("/repo/big/repo", params={"page": 10}).text
        assert 'data-tag="t0999"' in last and 'data-tag="t0899"' not in last and 'rel="next"' not in last
        filtered = client.get("/repo/big/repo", params={"q": "t09"}).text
        assert filtered.count('<tr data-tag="') == 100 and "page 1 of 1" not in filtered
        again = time.perf_counter()
        client.get("/repo/big/repo", params={"page": 5})
        warm = time.perf_counter() - again
        # A sanity figure for the log, not an assertion: the machine is shared.
        print(f"\n1000 tags: first page {elapsed * 1000:.0f} ms, page 5 {warm * 1000:.0f} ms")


@pytest.mark.parametrize("path", ["/", "/repo/team/app", "/repo/team/app/-/manifest/1.0"])
def test_head_requests_answer_like_get(open_serve: RunningServe, path: str) -> None:
    assert httpx.head(f"{open_serve.url}{path}").status_code == 200
