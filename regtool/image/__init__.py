"""Local image formats: content-addressed blob store, OCI image layout, docker-archive, v1 <-> OCI conversion."""
