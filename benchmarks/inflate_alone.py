"""The decompression's own cost of pulling an image into a docker-archive, measured alone.

    python benchmarks/inflate_alone.py LAYOUT OUT

For each layer blob of the OCI layout's one image: inflate it (ISA-L, as regtool does), hash the tar (its
diff_id, which a pull checks) and write the tar to ``OUT`` -- the work a docker-archive pull does beyond a
pull into a layout, and nothing else (no network, no registry). ``pull_push_vs_skopeo.py --archive`` times it
as a contestant beside the two pulls, so the archive pull's extra time can be set against it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from isal import isal_zlib

_READ = 1 << 20


def _layers(layout: Path) -> list[Path]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_text())
    return [layout / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:") for layer in manifest["layers"]]


def main() -> None:
    layout, out = Path(sys.argv[1]), Path(sys.argv[2])
    with out.open("wb") as sink:
        for blob in _layers(layout):
            inflater = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
            diff_id = hashlib.sha256()
            with blob.open("rb") as source:
                while chunk := source.read(_READ):
                    tar = inflater.decompress(chunk)
                    diff_id.update(tar)
                    sink.write(tar)
            print(f"{blob.name[:12]} -> sha256:{diff_id.hexdigest()[:12]}")


if __name__ == "__main__":
    main()
