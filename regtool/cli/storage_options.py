"""Where a registry's storage is, as ``regtool serve`` and ``regtool serve gc`` both take it: the ``--s3-*``
options (declared once here, used by both commands) and the S3Settings they make."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from regtool.server.config import S3Settings

__all__ = [
    "DEFAULT_REGION",
    "S3_OPTION_NAMES",
    "S3BucketOption",
    "S3EndpointOption",
    "S3PathStyleOption",
    "S3RegionOption",
    "S3RootOption",
    "s3_settings",
]

# Keys only from the standard AWS environment or the config file, never a flag: a flag shows in `ps`.
S3EndpointOption = Annotated[
    str | None,
    typer.Option("--s3-endpoint", metavar="URL", help="S3-compatible endpoint (default: AWS).", show_default=False),
]
S3BucketOption = Annotated[
    str | None, typer.Option("--s3-bucket", help="Bucket of --storage s3 (keys: AWS_ACCESS_KEY_ID...).")
]
S3RegionOption = Annotated[str, typer.Option("--s3-region", help="Region of the bucket.")]
S3RootOption = Annotated[str, typer.Option("--s3-root", metavar="PREFIX", help="Key prefix in the bucket.")]
S3PathStyleOption = Annotated[
    bool, typer.Option("--s3-path-style", help="Address the bucket in the path, not the host name.")
]
DEFAULT_REGION = "us-east-1"

# The parameter names of the options above, as click reports which were given.
S3_OPTION_NAMES = frozenset({"s3_endpoint", "s3_bucket", "s3_region", "s3_root", "s3_path_style"})


def s3_settings(
    storage: str, endpoint: str | None, bucket: str | None, region: str, prefix: str, path_style: bool
) -> S3Settings | None:
    """The S3Settings of the ``--s3-*`` options (None unless ``--storage s3``); UsageError for options that do
    not fit together."""
    from regtool.errors import UsageError
    from regtool.server.config import S3Settings

    if storage != "s3":
        if endpoint is not None or bucket is not None or prefix or path_style or region != DEFAULT_REGION:
            raise UsageError("the --s3-* options are for --storage s3")
        return None
    if not bucket:
        raise UsageError("--storage s3 needs --s3-bucket")
    return S3Settings(
        bucket=bucket,
        region=region,
        endpoint=endpoint,
        root_directory=prefix,
        force_path_style=path_style,
        secure=endpoint is None or not endpoint.startswith("http://"),
    )
