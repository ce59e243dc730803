"""One Docker Engine per test module (``tests.support.dockerd``)."""

from tests.support.dockerd import dockerd  # noqa: F401
