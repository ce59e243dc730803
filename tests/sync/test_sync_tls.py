"""A skopeo sync file's ``tls-verify: false`` skips certificate checks for its registry alone."""

from __future__ import annotations

from pathlib import Path

from tests.auth.support import run_auth_serve
from tests.cli.support import assert_user_error, in_process
from tests.support.images import write_image
from tests.support.pki import make_pki


def test_tls_verify_false_is_for_that_registry_only(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    write_image(tmp_path / "layout", "1.0", [{"a.txt": b"a"}])
    tls = (pki.server_cert, pki.server_key)
    with run_auth_serve(tmp_path / "a", tls=tls) as a, run_auth_serve(tmp_path / "b", tls=tls) as b:
        ca = ("--ca-cert", str(pki.ca_cert))
        assert in_process("push", f"{tmp_path / 'layout'}:1.0", f"{a.host}/team/app:1.0", *ca).returncode == 0
        config = tmp_path / "sync.yaml"
        config.write_text(f"{a.host}:\n  tls-verify: false\n  images:\n    team/app: []\n")

        # The source's certificate is not checked; the destination's still is, and nothing trusts it.
        refused = in_process("sync", "--config", str(config), b.host)
        assert refused.returncode == 6
        warning, error = refused.stderr.splitlines()
        assert warning == f"warning: tls-verify: false: TLS certificates of {a.host} are not verified"
        assert error.startswith(f"error: registry {b.host} unreachable") and "CERTIFICATE_VERIFY_FAILED" in error

        trusted = in_process("sync", "--config", str(config), b.host, *ca)
        assert trusted.returncode == 0, trusted.stderr
        assert "1 image(s): 1 copied" in trusted.stdout
        assert in_process("tags", f"{b.host}/team/app", *ca).stdout.split() == ["1.0"]

        config.write_text(f"{a.host}:\n  images:\n    team/app: []\n")
        verified = in_process("sync", "--config", str(config), b.host, "--dry-run")
        assert_user_error(verified, 6, a.host, "CERTIFICATE_VERIFY_FAILED")
