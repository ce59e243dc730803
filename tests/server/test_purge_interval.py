"""``upload_purge_interval`` (distribution's ``maintenance.uploadpurging.interval``): an abandoned upload outlives its
age until the purge next looks."""

from __future__ import annotations

import time

import httpx

from tests.support.serve import run_serve


def _abandoned_upload_after(interval: float | None) -> int:
    """The status of an upload session left idle for 0.6 s, past its 0.2 s age, then asked about twice."""
    with run_serve(None, upload_purge_age=0.2, upload_purge_interval=interval) as server:
        with httpx.Client(base_url=server.url) as client:
            location = client.post("/v2/app/blobs/uploads/").headers["location"]
            time.sleep(0.6)
            client.get("/v2/")  # the request after the interval starts a pass
            time.sleep(0.3)
            return client.get(location).status_code


def test_the_interval_decides_when_an_abandoned_upload_goes() -> None:
    assert _abandoned_upload_after(None) == 404  # default: half the age
    assert _abandoned_upload_after(3600.0) == 204  # not looked at again within the hour
