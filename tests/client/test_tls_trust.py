"""``warm_default_context``: the default TLS context built ahead in a thread, taken by the next client, once."""

from __future__ import annotations

import ssl
import threading

import pytest

from regtool.client.net.tls import TLSContexts, TLSSettings, warm_default_context


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread of every ``ssl.create_default_context()`` call."""
    real = ssl.create_default_context
    names: list[str] = []

    def recorded() -> ssl.SSLContext:
        names.append(threading.current_thread().name)
        return real()

    monkeypatch.setattr(ssl, "create_default_context", recorded)
    return names


def test_the_next_default_context_is_the_one_built_ahead(builds: list[str]) -> None:
    warm_default_context()
    context = TLSContexts().default()
    assert builds == ["regtool-tls-warm-up"]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert TLSContexts().default() is not context  # each context warmed up serves one client
    assert builds == ["regtool-tls-warm-up", threading.current_thread().name]


def test_a_second_warm_up_before_use_builds_nothing_more(builds: list[str]) -> None:
    warm_default_context()
    warm_default_context()
    TLSContexts().default()
    assert builds == ["regtool-tls-warm-up"]


def test_the_settings_apply_to_the_context_built_ahead(builds: list[str]) -> None:
    warm_default_context()
    context = TLSContexts(TLSSettings(insecure=True)).default()
    assert builds == ["regtool-tls-warm-up"]
    assert context.verify_mode is ssl.CERT_NONE and not context.check_hostname


def test_a_failed_warm_up_builds_again_where_the_context_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ssl.create_default_context
    calls: list[str] = []

    def fails_in_the_warm_up() -> ssl.SSLContext:
        calls.append(threading.current_thread().name)
        if threading.current_thread().name == "regtool-tls-warm-up":
            raise ssl.SSLError("no CA store")
        return real()

    monkeypatch.setattr(ssl, "create_default_context", fails_in_the_warm_up)
    warm_default_context()
    assert TLSContexts().default().verify_mode is ssl.CERT_REQUIRED
    assert calls == ["regtool-tls-warm-up", threading.current_thread().name]
