"""The registry v1 image store over a storage driver (protocols.md §1.2, §1.3, §7).

::

    v1/images/<id>/json               the image JSON, byte-exact as pushed
    v1/images/<id>/ancestry           ["<id>", "<parent>", ..., "<root>"]
    v1/images/<id>/layer              a link: "sha256:<hex>" of the layer bytes in the shared blobs/ store
    v1/images/<id>/_checksum          ["sha256:<payload>"]: sha256(json + "\\n" + layer), computed on upload
    v1/images/<id>/_inprogress        present from the json PUT until the checksum PUT verified the payload
    v1/images/<id>/_layer_upload      the id of the last layer upload begun for the image
    v1/images/<id>/_v2layer           the layer as the v2 API shows it, and its diff_id (v1mirror.py)
    v1/images/<id>/_v2manifest        the digest of the v2 manifest made for the image (v1mirror.py)
    v1/repositories/<ns>/<repo>/tag_<tag>       the image id a tag names
    v1/repositories/<ns>/<repo>/_json_<tag>     {last_update, docker_version, ..., arch, os, kernel}
    v1/repositories/<ns>/<repo>/json            the same, for the repository
    v1/repositories/<ns>/<repo>/_index_images   [{"id": .., "checksum"?: ..}] as PUT by clients
    v1/_uploads/<uuid>/data                     a layer being received (moved into blobs/ once hashed)
    v1/_uploads/<uuid>/image                    the image id that layer is for, written before its first byte
    v1/_written                                 a fresh token after each image JSON or tag written

Layer bytes live in the content-addressed blob store that the v2 API uses too, so the same gzip layer pushed
over v1 and over v2 is stored once. Repository name components are escaped into the storage grammar (``%xx``
written ``=xx``), the way docker-registry ``quote_plus``-escaped them, so no name can leave ``v1/``.

Blocking code, called from worker threads. Errors are :class:`V1Error` (status + the message of
docker-registry's ``{"error": ...}`` envelope).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

from regtool.digest import Digest, DigestVerifier
from regtool.errors import InvalidDigest, RegtoolError
from regtool.protocol.v1 import IMAGE_ID_RE, normalize_v1_repository
from regtool.server.storage import paths
from regtool.server.storage.driver import FileWriter, PathNotFound, StorageDriver, exists
from regtool.server.storage.registry import BlobStore

__all__ = [
    "UPLOAD_DATA",
    "UPLOAD_IMAGE",
    "V1_UPLOADS",
    "V1Error",
    "V1ImageInfo",
    "V1ImageStore",
    "image_file",
    "load_json",
    "unescape_component",
    "user_agent_metadata",
    "v1_repository_dir",
    "write_token",
]

_IMAGES = f"{paths.V1}/images"
_REPOSITORIES = f"{paths.V1}/repositories"
V1_UPLOADS = f"{paths.V1}/_uploads"
UPLOAD_DATA = "data"
UPLOAD_IMAGE = "image"
_WRITTEN = f"{paths.V1}/_written"
_MAX_NAME = 255
# An escaped component must fit a file name (NAME_MAX), and the directory must leave room under
# paths.MAX_PATH_LENGTH for the files in it ("_json_<tag>", at most 134 characters).
_MAX_COMPONENT = 255
_MAX_DIRECTORY = paths.MAX_PATH_LENGTH - 256


class V1Error(RegtoolError):
    """A v1 API error: ``status`` and the message for ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class V1ImageInfo:
    """A complete image: its JSON bytes, layer blob digest and size, and the payload checksums."""

    json: bytes
    layer: Digest | None
    size: int | None
    checksums: tuple[str, ...]


def _escape_component(component: str) -> str:
    # Percent-encode everything but [A-Za-z0-9_.-], spell "%" as "=", and start with "_": every name, even
    # "..", becomes one plain component that paths.check_path accepts.
    return "_" + quote(component, safe="").replace("~", "%7E").replace("%", "=")


def load_json(raw: bytes, message: str) -> Any:
    """``raw`` parsed as JSON; ``V1Error(400, message)`` when it is not (also when it nests too deeply)."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise V1Error(400, message) from None


def v1_repository_dir(name: str) -> str:
    """The storage directory of v1 repository ``name`` (``library/`` added to one-part names).

    400 "Invalid repository name" for an empty component, or a name too long to store once escaped.
    """
    name = normalize_v1_repository(name)
    components = name.split("/")
    if len(name) > _MAX_NAME or any(not c for c in components):
        raise V1Error(400, "Invalid repository name")
    escaped = [_escape_component(c) for c in components]
    directory = f"{_REPOSITORIES}/" + "/".join(escaped)
    if len(directory) > _MAX_DIRECTORY or any(len(c.encode()) > _MAX_COMPONENT for c in escaped):
        raise V1Error(400, "Invalid repository name")
    return directory


def _image_dir(image_id: str) -> str:
    if not IMAGE_ID_RE.match(image_id):
        raise V1Error(404, "Invalid image ID")
    return f"{_IMAGES}/{image_id}"


def image_file(image_id: str, name: str) -> str:
    """The driver path of file ``name`` in image ``image_id``'s directory (for data kept beside the image)."""
    return f"{_image_dir(image_id)}/{name}"


def _upload_dir(upload: str) -> str:
    return upload.rsplit("/", 1)[0]


def write_token(driver: StorageDriver) -> bytes | None:
    """The token the last image JSON or tag write left (None before the first): the garbage collector reads it
    before marking v1 images and again before each removal, and marks again when it changed."""
    try:
        return driver.get_content(_WRITTEN)
    except PathNotFound:
        return None


class V1ImageStore:
    """v1 images, tags and repository indexes over ``driver``; layers in the shared ``blobs`` store."""

    def __init__(self, driver: StorageDriver, blobs: BlobStore) -> None:
        self.driver = driver
        self.blobs = blobs

    # -- small helpers --------------------------------------------------------------------------------------

    def _get(self, path: str) -> bytes | None:
        try:
            return self.driver.get_content(path)
        except PathNotFound:
            return None

    def _delete(self, path: str) -> None:
        try:
            self.driver.delete(path)
        except PathNotFound:
            pass

    def _written(self) -> None:
        # A token, not a time: the collector compares it for equality, so no clock's resolution can hide a write.
        self.driver.put_content(_WRITTEN, uuid.uuid4().hex.encode())

    # -- images ---------------------------------------------------------------------------------------------

    def image_exists(self, image_id: str) -> bool:
        """The image JSON is stored (complete or still being uploaded)."""
        return exists(self.driver, f"{_image_dir(image_id)}/json")

    def in_progress(self, image_id: str) -> bool:
        return exists(self.driver, f"{_image_dir(image_id)}/_inprogress")

    def _readable(self, image_id: str) -> str:
        directory = _image_dir(image_id)
        if not exists(self.driver, f"{directory}/json"):
            raise V1Error(404, "Image not found")
        if exists(self.driver, f"{directory}/_inprogress"):
            raise V1Error(400, "Image is being uploaded, retry later")
        return directory

    def put_json(self, image_id: str, raw: bytes) -> None:
        """``PUT /v1/images/<id>/json``: validate, mark in progress, store the bytes and the ancestry."""
        directory = _image_dir(image_id)
        data = load_json(raw, "Invalid JSON")
        if not isinstance(data, dict):
            raise V1Error(400, "Invalid JSON")
        if "id" not in data:
            raise V1Error(400, "Missing key `id' in JSON")
        if data["id"] != image_id:
            raise V1Error(400, "JSON data contains invalid id")
        parent = data.get("parent")
        parent_ancestry: list[str] = []
        if parent not in (None, ""):
            if not isinstance(parent, str) or not IMAGE_ID_RE.match(parent) or not self.image_exists(parent):
                raise V1Error(400, "Image depends on a non existing parent")
            stored = self._get(f"{_image_dir(parent)}/ancestry")
            loaded = json.loads(stored) if stored else [parent]
            parent_ancestry = [str(i) for i in loaded] if isinstance(loaded, list) else [parent]
            if image_id in parent_ancestry:  # a JSON put again naming its own descendant (or itself) as parent
                raise V1Error(400, "Invalid parent: the image would be its own ancestor")
        if self.image_exists(image_id) and not self.in_progress(image_id):
            raise V1Error(409, "Image already exists")
        self.driver.put_content(f"{directory}/_inprogress", b"true")
        self._delete(f"{directory}/_checksum")
        self.driver.put_content(f"{directory}/json", raw)
        self.driver.put_content(f"{directory}/ancestry", json.dumps([image_id, *parent_ancestry]).encode())
        # After the image is written: a collection that marked before it sees the token change and marks again,
        # finding the parent chain this image re-uses.
        self._written()

    def get_json(self, image_id: str) -> V1ImageInfo:
        """``GET /v1/images/<id>/json``: the bytes, layer size and payload checksums of a complete image."""
        directory = self._readable(image_id)
        raw = self._get(f"{directory}/json")
        if raw is None:
            raise V1Error(404, "Image not found")
        layer = self._layer_digest(directory)
        size = self.blobs.size(layer) if layer is not None else None
        checksums_raw = self._get(f"{directory}/_checksum")
        checksums: tuple[str, ...] = ()
        if checksums_raw:
            loaded = json.loads(checksums_raw)
            if isinstance(loaded, list):
                checksums = tuple(str(c) for c in loaded)
        return V1ImageInfo(raw, layer, size, checksums)

    def ancestry(self, image_id: str) -> bytes:
        directory = self._readable(image_id)
        raw = self._get(f"{directory}/ancestry")
        if raw is None:
            raise V1Error(404, "Image not found")
        return raw

    def chain(self, image_id: str) -> list[tuple[str, bytes, Digest]]:
        """``(id, JSON bytes, layer digest)`` of every image from the root to ``image_id``, all complete.

        V1Error when one of them is missing, still being uploaded or has no layer.
        """
        try:
            ids = json.loads(self.ancestry(image_id))
        except ValueError:
            raise V1Error(404, "Image not found") from None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise V1Error(404, "Image not found")
        chain = []
        for level in reversed(ids):
            info = self.get_json(level)
            if info.layer is None or info.size is None:
                raise V1Error(404, "Image not found")
            chain.append((level, info.json, info.layer))
        return chain

    def _layer_digest(self, directory: str) -> Digest | None:
        link = self._get(f"{directory}/layer")
        if link is None:
            return None
        try:
            return Digest.parse(link.decode())
        except (InvalidDigest, UnicodeDecodeError):
            return None

    def layer(self, image_id: str) -> tuple[Digest, int]:
        """The layer blob of a complete image and its size; 404 when there is none."""
        directory = self._readable(image_id)
        digest = self._layer_digest(directory)
        size = self.blobs.size(digest) if digest is not None else None
        if digest is None or size is None:
            raise V1Error(404, "Image not found")
        return digest, size

    def open_layer(self, digest: Digest, offset: int = 0) -> BinaryIO:
        return self.blobs.open(digest, offset)

    def begin_layer(self, image_id: str) -> tuple[str, FileWriter, bytes]:
        """Checks for ``PUT /v1/images/<id>/layer``; returns (upload path, writer, the image JSON bytes)."""
        directory = _image_dir(image_id)
        raw = self._get(f"{directory}/json")
        if raw is None:
            raise V1Error(404, "Image not found")
        if not self.in_progress(image_id):
            raise V1Error(409, "Image already exists")
        upload_id = str(uuid.uuid4())
        directory = f"{V1_UPLOADS}/{upload_id}"
        # Both before the first byte. The upload names its image, so the garbage collector keeps an image whose
        # layer is still arriving and finds an upload a crash left (on object storage its bytes may be only the
        # parts of a multipart upload, which no listing shows). The image's directory names the upload, so its
        # newest file says a push came back to it, however long ago its JSON was written.
        self.driver.put_content(f"{directory}/{UPLOAD_IMAGE}", image_id.encode())
        self.driver.put_content(f"{_image_dir(image_id)}/_layer_upload", upload_id.encode())
        upload = f"{directory}/{UPLOAD_DATA}"
        return upload, self.driver.writer(upload), raw

    def finish_layer(
        self, image_id: str, upload: str, writer: FileWriter, blob: DigestVerifier, payload: str, json_bytes: bytes
    ) -> None:
        """Make the received layer durable, move it into the blob store, link it and record its checksum (of
        ``json_bytes``, the JSON ``begin_layer`` read: 409 when another PUT replaced it meanwhile, since the
        checksum the client then sends would vouch for JSON it never covered)."""
        directory = _image_dir(image_id)
        writer.commit()
        digest = blob.digest()
        stored = self.blobs.size(digest) is not None
        if stored:
            # The same layer is stored already: marked as re-used (see Registry.commit_upload), then looked for
            # again in the store itself, so a collector that removed it in between is answered by this copy.
            self.blobs.mark_used(digest)
            stored = self.blobs.stored_size(digest) is not None
        if not stored:
            self.blobs.ingest(upload, digest)
        self._delete(_upload_dir(upload))
        self._same_json(directory, json_bytes)
        self.driver.put_content(f"{directory}/layer", str(digest).encode())
        self.driver.put_content(f"{directory}/_checksum", json.dumps([payload]).encode())

    def _same_json(self, directory: str, json_bytes: bytes) -> None:
        """The image's JSON is still ``json_bytes``, read once just before the checksum is recorded (the caller
        aborts the upload otherwise): PathNotFound when the image went (the collector removed a push that looked
        dead), 409 when another PUT replaced it."""
        current = self._get(f"{directory}/json")
        if current is None:
            raise PathNotFound(f"{directory}/json")
        if current != json_bytes:
            raise V1Error(409, "The image's JSON changed while its layer was uploaded: upload the layer again")

    def abort_layer(self, upload: str, writer: FileWriter) -> None:
        writer.close()
        self._delete(_upload_dir(upload))

    def put_checksum(self, image_id: str, payload: str | None) -> None:
        """``PUT /v1/images/<id>/checksum``: verify the client's payload checksum and end the upload."""
        directory = _image_dir(image_id)
        if not exists(self.driver, f"{directory}/json"):
            raise V1Error(404, "Image not found")
        if not payload:
            raise V1Error(400, "Missing Image's checksum")
        if not self.in_progress(image_id):
            raise V1Error(409, "Cannot set this image checksum")
        computed = self._get(f"{directory}/_checksum")
        if computed is None:
            raise V1Error(400, "Checksum not found")
        loaded = json.loads(computed)
        values = {p.strip() for p in payload.split(",")}
        if not isinstance(loaded, list) or not values & {str(c) for c in loaded}:
            raise V1Error(400, "Checksum mismatch")
        self._delete(f"{directory}/_inprogress")

    # -- repositories ---------------------------------------------------------------------------------------

    def put_index(self, name: str, entries: list[dict[str, Any]]) -> None:
        """Merge ``entries`` into the repository's ``_index_images`` (one ``{id, checksum?}`` per id)."""
        path = f"{v1_repository_dir(name)}/_index_images"
        stored = self._get(path)
        current = json.loads(stored) if stored else []
        merged: dict[str, dict[str, Any]] = {}
        for item in [*(current if isinstance(current, list) else []), *entries]:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            entry = merged.setdefault(item["id"], {"id": item["id"]})
            if isinstance(item.get("checksum"), str) and item["checksum"]:
                entry["checksum"] = item["checksum"]
        self.driver.put_content(path, json.dumps(list(merged.values())).encode())

    def get_index(self, name: str) -> bytes:
        raw = self._get(f"{v1_repository_dir(name)}/_index_images")
        if raw is None:
            raise V1Error(404, "images not found")
        return raw

    def tags(self, name: str) -> dict[str, str]:
        directory = v1_repository_dir(name)
        try:
            entries = self.driver.list(directory)
        except PathNotFound:
            raise V1Error(404, "Repository not found") from None
        found: dict[str, str] = {}
        for entry in sorted(entries):
            if entry.startswith("tag_"):
                raw = self._get(f"{directory}/{entry}")
                if raw is not None:
                    found[entry[4:]] = raw.decode()
        return found

    def tag(self, name: str, tag: str) -> str:
        raw = self._get(f"{v1_repository_dir(name)}/tag_{tag}")
        if raw is None:
            raise V1Error(404, "Tag not found")
        return raw.decode()

    def put_tag(self, name: str, tag: str, image_id: str, metadata: dict[str, Any]) -> None:
        if not IMAGE_ID_RE.match(image_id) or not self.image_exists(image_id):
            raise V1Error(404, "Image not found")
        directory = v1_repository_dir(name)
        encoded = json.dumps(metadata, sort_keys=True).encode()
        self.driver.put_content(f"{directory}/tag_{tag}", image_id.encode())
        self._written()
        self.driver.put_content(f"{directory}/_json_{tag}", encoded)
        self.driver.put_content(f"{directory}/json", encoded)

    def delete_tag(self, name: str, tag: str) -> None:
        directory = v1_repository_dir(name)
        try:
            self.driver.delete(f"{directory}/tag_{tag}")
        except PathNotFound:
            raise V1Error(404, f"Tag not found: {tag}") from None
        self._delete(f"{directory}/_json_{tag}")

    def delete_repository(self, name: str) -> None:
        try:
            self.driver.delete(v1_repository_dir(name))
        except PathNotFound:
            raise V1Error(404, "Repository not found") from None

    def metadata(self, name: str, tag: str | None = None) -> dict[str, Any]:
        """The ``json`` of a repository or a tag, with docker-registry's defaults for missing fields."""
        directory = v1_repository_dir(name)
        raw = self._get(f"{directory}/_json_{tag}" if tag is not None else f"{directory}/json")
        data: dict[str, Any] = {
            "last_update": None,
            "docker_version": None,
            "docker_go_version": None,
            "arch": "amd64",
            "os": "linux",
            "kernel": None,
        }
        if raw:
            loaded = json.loads(raw)
            if isinstance(loaded, dict):
                data.update({k: v for k, v in loaded.items() if v is not None})
        return data

    def properties(self, name: str) -> dict[str, str]:
        """``{"access": "public"|"private"}``; 404 for an unknown repository."""
        directory = v1_repository_dir(name)
        if not exists(self.driver, directory):
            raise V1Error(404, "Repository not found")
        private = exists(self.driver, f"{directory}/_private")
        return {"access": "private" if private else "public"}

    def put_properties(self, name: str, access: str) -> None:
        directory = v1_repository_dir(name)
        if not exists(self.driver, directory):
            raise V1Error(404, "Repository not found")
        if access == "private":
            self.driver.put_content(f"{directory}/_private", b"")
        else:
            self._delete(f"{directory}/_private")

    def repositories_holding(self, image_id: str) -> list[str]:
        """The v1 repositories whose image list (``_index_images``, what a push declares) names ``image_id``."""
        holding = []
        for name in self.search(""):
            raw = self._get(f"{v1_repository_dir(name)}/_index_images")
            try:
                entries = json.loads(raw) if raw else []
            except ValueError:
                continue
            if isinstance(entries, list) and any(isinstance(e, dict) and e.get("id") == image_id for e in entries):
                holding.append(name)
        return holding

    def search(self, query: str) -> list[str]:
        """Names of the v1 repositories (``ns/repo``) that contain ``query``."""
        found: list[str] = []
        try:
            namespaces = self.driver.list(_REPOSITORIES)
        except PathNotFound:
            return []
        for namespace in sorted(namespaces):
            try:
                repos = self.driver.list(f"{_REPOSITORIES}/{namespace}")
            except PathNotFound:
                continue
            for repo in sorted(repos):
                name = unescape_component(namespace) + "/" + unescape_component(repo)
                if query in name:
                    found.append(name)
        return found


def unescape_component(component: str) -> str:
    """One component of a repository's storage directory back to the component of its name."""
    return unquote(component[1:].replace("=", "%"))


def user_agent_metadata(user_agent: str) -> dict[str, Any]:
    """``docker/X go/Y os/Z arch/W kernel/K`` -> the tag metadata docker-registry records."""
    parts = dict(item.split("/", 1) for item in user_agent.split() if "/" in item)
    return {
        "last_update": int(time.time()),
        "docker_version": parts.get("docker"),
        "docker_go_version": parts.get("go"),
        "arch": parts.get("arch", "amd64"),
        "os": parts.get("os", "linux"),
        "kernel": parts.get("kernel"),
    }
