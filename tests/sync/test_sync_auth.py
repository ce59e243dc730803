"""``regtool sync`` between two registries with token auth: each end its own user (a skopeo file's
``credentials`` for the source, ``-u`` for the destination), and one token per registry and scope for the run,
however many tags."""

from __future__ import annotations

from pathlib import Path

from regtool.server.auth.htpasswd import hash_password
from tests.auth.support import run_auth_serve
from tests.cli.support import in_process
from tests.support.images import write_image
from tests.support.serve import run_serve

TAGS = [f"1.{i}" for i in range(10)]


def test_each_end_uses_its_own_user_and_one_token_per_scope(tmp_path: Path) -> None:
    (tmp_path / "source.htpasswd").write_text(f"bob:{hash_password('builder-7')}\n")
    (tmp_path / "dest.htpasswd").write_text(f"alice:{hash_password('wonder-land-9')}\n")
    for tag in TAGS:
        write_image(tmp_path / "layout", tag, [{"base": b"base"}, {"v": tag.encode()}])
    with (
        run_auth_serve(tmp_path / "a", htpasswd=tmp_path / "source.htpasswd", token_auth=True) as a,
        run_auth_serve(tmp_path / "b", htpasswd=tmp_path / "dest.htpasswd", token_auth=True) as b,
        run_serve(tmp_path / "plain", enable_v1=False) as plain,
    ):
        for tag in TAGS:
            assert in_process("push", f"{tmp_path / 'layout'}:{tag}", f"{plain.host}/team/app:{tag}").returncode == 0
        seeded = in_process(
            "sync", f"{plain.host}/team/app", a.host, "-u", "bob", "--password-stdin", stdin="builder-7\n"
        )
        assert seeded.returncode == 0, seeded.stderr
        config = tmp_path / "sync.yaml"
        config.write_text(
            f"{a.host}:\n  images:\n    team/app: []\n  credentials:\n    username: bob\n    password: builder-7\n"
        )
        a.requests.clear()
        b.requests.clear()
        proc = in_process(
            "sync",
            "--config",
            str(config),
            f"{b.host}/mirror",
            "-u",
            "alice",
            "--password-stdin",
            stdin="wonder-land-9\n",
        )
        assert proc.returncode == 0, proc.stderr
        assert "10 image(s): 10 copied" in proc.stdout
        # bob exists only at the source and alice only at the destination: each end got its own user. Ten tags
        # cost one token at the source (pull) and two at the destination (pull to compare, then pull and push).
        tokens_a = [e for e in a.requests.events() if e.path == "/token"]
        tokens_b = [e for e in b.requests.events() if e.path == "/token"]
        assert len(tokens_a) == 1 and 1 <= len(tokens_b) <= 2
        assert all(e.status == 200 for e in (*tokens_a, *tokens_b))
