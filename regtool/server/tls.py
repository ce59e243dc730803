"""Checks of ``serve --tls-cert/--tls-key`` before uvicorn gets them, so a bad file is a one-line usage error."""

from __future__ import annotations

import ssl
from pathlib import Path

from regtool.errors import UsageError

__all__ = ["check_tls_files"]


def check_tls_files(cert: Path, key: Path) -> None:
    """Load ``cert`` and ``key`` the way uvicorn will; UsageError naming the files when they do not fit."""
    # ssl reports a missing file without its name (FileNotFoundError.filename is None), so look first.
    for what, path in (("certificate", cert), ("key", key)):
        if not path.is_file():
            state = "is not a file" if path.exists() else "not found"
            raise UsageError(f"TLS {what} file {path} {state}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise UsageError(f"TLS file not found: {exc.filename or f'{cert} or {key}'}") from None
    except ssl.SSLError as exc:
        raise UsageError(f"cannot use TLS certificate {cert} with key {key}: {exc.reason or exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read TLS files {cert}, {key}: {exc.strerror or exc}") from None
