"""One Docker Engine per test module (``tests.support.dockerd``)."""

from tests.support.dockerd import dockerd  # noqa: F401
from tests.support.seaweedfs import s3_bucket, seaweedfs  # noqa: F401  (for test_s3.py)
