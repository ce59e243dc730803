"""Local image formats: content-addressed blob store, OCI image layout, docker-archive, v1 <-> OCI conversion.

- ``blobstore``: ``BlobStore`` (``blobs/<alg>/<hex>``) and its sync, resumable, verifying ``BlobWriter``.
- ``oci_layout``: ``OciLayout`` (oci-layout, index.json with one entry per ref name, blobs/).
- ``docker_archive``: ``write_docker_archive`` / ``read_docker_archive`` (``docker save`` tarballs);
  ``open_docker_archive``, the archive checked before its layers are compressed.
- ``archive_layers``: an archive's layers gzipped in threads, each into a ``growing_blob.GrowingBlob`` (a file
  readers follow while it is written).
- ``archive_writer``: the one docker-archive writer (``plan_archive``, ``ArchiveWriter``).
- ``layer_unpack``: ``UnpackingStore``, the docker-archive written while a pull's layers download.
- ``compression``: sniff gzip/bzip2/xz/zstd, streaming decompression, deterministic gzip.
- ``source``: ``ImageSource`` and ``open_source(spec)``, what a push reads from.
- ``convert``: v1 image chains <-> OCI configs.
"""
