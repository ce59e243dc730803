"""distribution's config.yml read by ``serve --config``: the files distribution ships, its environment overrides,
and a precise error for every key regtool does not act on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from regtool.errors import UsageError
from regtool.server.config import ProxyRemote, S3Settings
from regtool.server.configfile import read_config_file, server_config_from_file

# Debian's /etc/docker/registry/config.yml (docker-registry 2.8.2), verbatim.
DEBIAN = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""

# distribution's cmd/registry/config-dev.yml (v2.8.2), verbatim: disabled hooks and webhooks, redis, debug server.
DEV = """\
version: 0.1
log:
  level: debug
  fields:
    service: registry
    environment: development
  hooks:
    - type: mail
      disabled: true
      levels:
        - panic
      options:
        smtp:
          addr: mail.example.com:25
          username: mailuser
          password: password
          insecure: true
        from: sender@example.com
        to:
          - errors@example.com
storage:
    delete:
      enabled: true
    cache:
        blobdescriptor: redis
    filesystem:
        rootdirectory: /var/lib/registry
    maintenance:
        uploadpurging:
            enabled: false
http:
    addr: :5000
    debug:
        addr: :5001
        prometheus:
            enabled: true
            path: /metrics
    headers:
        X-Content-Type-Options: [nosniff]
redis:
  addr: localhost:6379
  pool:
    maxidle: 16
    maxactive: 64
    idletimeout: 300s
  dialtimeout: 10ms
  readtimeout: 10ms
  writetimeout: 10ms
notifications:
    events:
        includereferences: true
    endpoints:
        - name: local-5003
          url: http://localhost:5003/callback
          headers:
             Authorization: [Bearer <an example token>]
          timeout: 1s
          threshold: 10
          backoff: 1s
          disabled: true
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""

# distribution's contrib/docker-integration/tokenserver/registry-config.yml (v2.8.2), verbatim.
TOKEN = """\
version: 0.1
loglevel: debug
storage:
    cache:
        blobdescriptor: inmemory
    filesystem:
        rootdirectory: /tmp/registry-dev
http:
    addr: 0.0.0.0:5000
    tls:
        certificate: "/etc/docker/registry/localregistry.cert"
        key: "/etc/docker/registry/localregistry.key"
compatibility:
    schema1:
        enabled: true
auth:
    token:
        realm: "https://auth.localregistry:5556/token/"
        issuer: "registry-test"
        service: "registry-test"
        rootcertbundle: "/etc/docker/registry/tokenbundle.pem"
"""

S3 = """\
version: 0.1
storage:
  s3:
    regionendpoint: http://127.0.0.1:8333
    bucket: registry
    region: us-east-1
    rootdirectory: /cluster/
    chunksize: 10485760
    accesskey: AKID
    secretkey: SECRET
    secure: false
    v4auth: true
  redirect:
    disable: true
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: true
      age: 2h
      interval: 30m
      dryrun: false
    readonly:
      enabled: true
http:
  addr: 127.0.0.1:5050
  host: https://registry.example.com
  secret: shared-between-instances
redis:
  addr: 127.0.0.1:6379
  password: pw
  db: 2
proxy:
  remoteurl: https://registry-1.docker.io
  username: someone
  password: hunter2
  ttl: 72h
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = _write(tmp_path, textwrap.dedent(text))
    with pytest.raises(UsageError) as caught:
        read_config_file(path, environ or {})
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message[len(f"{path}: ") :]


def test_debians_file_says_precisely_why_it_cannot_start(tmp_path: Path) -> None:
    # Debian ships an htpasswd path that is a directory; regtool names the key and the reason.
    htpasswd_dir = tmp_path / "etc-docker-registry"
    htpasswd_dir.mkdir()
    text = DEBIAN.replace("/etc/docker/registry", str(htpasswd_dir))
    assert _error(tmp_path, text) == f"auth.htpasswd.path: {htpasswd_dir} is a directory, not an htpasswd file"


def test_a_missing_htpasswd_file_is_not_provisioned(tmp_path: Path) -> None:
    missing = tmp_path / "nobody" / "htpasswd"
    message = _error(tmp_path, DEBIAN.replace("/etc/docker/registry", str(missing)))
    assert message == (
        f"auth.htpasswd.path: {missing} does not exist; regtool does not provision users: "
        f"create it (htpasswd -Bc {missing} USER)"
    )
    assert not missing.parent.exists()


def test_debians_file_with_a_password_file_maps_every_key(tmp_path: Path) -> None:
    users = tmp_path / "htpasswd"
    users.write_text("")
    settings = read_config_file(_write(tmp_path, DEBIAN.replace("/etc/docker/registry", str(users))), {})
    assert settings.values == {
        "delete_enabled": True,
        "upload_purge_age": 168 * 3600.0,
        "access_log": True,
        "storage": "filesystem",
        "root": Path("/var/lib/docker-registry"),
        "storage_redirect": True,
        "read_only": False,
        "host": "0.0.0.0",
        "port": 5000,
        "response_headers": (("X-Content-Type-Options", "nosniff"),),
        "htpasswd": users,
        "token_service": "basic-realm",
        "health_storage_interval": 10.0,
        "health_storage_threshold": 3,
    }
    noted = [note.split(": ", 2)[1] for note in settings.notes]
    assert noted == ["log.fields", "storage.cache.blobdescriptor"]


def test_distributions_dev_file_works_unchanged(tmp_path: Path) -> None:
    settings = read_config_file(_write(tmp_path, DEV), {})
    values = settings.values
    assert values["log_level"] == "debug"
    assert values["delete_enabled"] is True
    assert values["upload_purge_age"] is None
    assert values["redis_addr"] == "localhost:6379"
    assert values["metrics"] is True
    assert (values["health_storage_interval"], values["health_storage_threshold"]) == (10.0, 3)
    assert values["debug_addr"] == "0.0.0.0:5001"


def test_the_token_server_example_verifies_tokens_from_its_realm(tmp_path: Path) -> None:
    values = read_config_file(_write(tmp_path, TOKEN), {}).values
    assert values["token_auth"] is True
    assert values["token_realm"] == "https://auth.localregistry:5556/token/"
    assert (values["token_service"], values["token_issuer"]) == ("registry-test", "registry-test")
    assert values["token_cert"] == Path("/etc/docker/registry/tokenbundle.pem")
    assert "token_key" not in values
    assert values["tls_cert"] == Path("/etc/docker/registry/localregistry.cert")
    assert (values["host"], values["port"], values["log_level"]) == ("0.0.0.0", 5000, "debug")


def test_s3_redis_proxy_and_the_cluster_settings(tmp_path: Path) -> None:
    settings = read_config_file(_write(tmp_path, S3), {})
    config = server_config_from_file(_write(tmp_path, S3), {})
    assert config.storage == "s3"
    assert config.root is None
    assert config.s3 == S3Settings(
        bucket="registry",
        region="us-east-1",
        endpoint="http://127.0.0.1:8333",
        root_directory="cluster",
        force_path_style=True,
        chunk_size=10 * 1024 * 1024,
        access_key="AKID",
        secret_key="SECRET",
        secure=False,
        skip_verify=False,
    )
    assert config.storage_redirect is False
    assert config.delete_enabled is True
    assert config.read_only is True
    assert (config.upload_purge_age, config.upload_purge_interval) == (7200.0, 1800.0)
    assert (config.host, config.port) == ("127.0.0.1", 5050)
    # Upload state lives in the shared storage and Locations are relative: both keys are taken and said to
    # change nothing.
    noted = {note.split(": ", 2)[1] for note in settings.notes}
    assert {"http.host", "http.secret"} <= noted
    assert (config.redis_addr, config.redis_password, config.redis_db) == ("127.0.0.1:6379", "pw", 2)
    assert config.proxy_remotes == (ProxyRemote("https://registry-1.docker.io", None, "someone", "hunter2"),)
    assert config.proxy_ttl == 72 * 3600.0


def test_flags_passed_as_overrides_win_over_the_file(tmp_path: Path) -> None:
    config = server_config_from_file(_write(tmp_path, S3), {}, port=6000, read_only=False)
    assert (config.port, config.read_only, config.host) == (6000, False, "127.0.0.1")


def test_environment_overrides_follow_distributions_rules(tmp_path: Path) -> None:
    environ = {
        "REGISTRY_STORAGE_S3_BUCKET": "other-bucket",
        "REGISTRY_STORAGE_S3_CHUNKSIZE": "5242880",
        "REGISTRY_HTTP_SECRET": "from-env",
        "REGISTRY_STORAGE_DELETE_ENABLED": "false",
        "REGISTRY_LOG_LEVEL": "warn",
        "REGISTRY_REDIS_DB": "5",
        # A Kubernetes service called "registry" sets these: ignored with a warning, as distribution does.
        "REGISTRY_SERVICE_HOST": "10.0.0.1",
        "OTHER_VARIABLE": "x",
    }
    settings = read_config_file(_write(tmp_path, S3), environ)
    config = server_config_from_file(_write(tmp_path, S3), environ)
    assert config.s3 is not None
    assert (config.s3.bucket, config.s3.chunk_size) == ("other-bucket", 5 * 1024 * 1024)
    assert any(": http.secret (from REGISTRY_HTTP_SECRET): upload state lives" in note for note in settings.notes)
    assert config.delete_enabled is False
    assert config.log_level == "warn"
    assert config.redis_db == 5
    assert settings.notes[-1] == "ignoring unrecognized environment variable REGISTRY_SERVICE_HOST"


def test_a_whole_section_from_the_environment_comes_before_its_keys(tmp_path: Path) -> None:
    # REGISTRY_STORAGE sorts before REGISTRY_STORAGE_DELETE_ENABLED: the section is replaced, then the key set.
    environ = {"REGISTRY_STORAGE": "inmemory", "REGISTRY_STORAGE_DELETE_ENABLED": "true"}
    config = server_config_from_file(_write(tmp_path, S3), environ)
    assert (config.storage, config.s3, config.delete_enabled) == ("inmemory", None, True)
    # A key of a map is matched in upper case (Filesystem here) and its keys replaced in lower case.
    text = "version: 0.1\nstorage:\n  Filesystem:\n    RootDirectory: /elsewhere\n"
    environ = {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "r")}
    with pytest.raises(
        UsageError, match=r"storage\.Filesystem \(from REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY\): unknown"
    ):
        read_config_file(_write(tmp_path, text), environ)
    text = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /elsewhere\n"
    config = server_config_from_file(_write(tmp_path, text), environ)
    assert config.root == tmp_path / "r"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "version: 0.1\nstorage:\n  azure:\n    accountname: a\n",
            "storage.azure: not supported by regtool serve (its drivers: filesystem, inmemory, s3)",
        ),
        (
            "version: 0.1\nstorage:\n  filesytem:\n    rootdirectory: /r\n",
            "storage.filesytem: unknown storage driver (regtool serve has filesystem, inmemory and s3)",
        ),
        ("version: 0.1\nstorage: inmemory\nhttp:\n  prefix: /registry\n", "http.prefix: /registry: not supported"),
        ("version: 0.1\nstorage: inmemory\nmiddleware:\n  storage: []\n", "middleware: not supported"),
        ("version: 0.1\nstorage: inmemory\nstorge: {}\n", "storge: not supported by regtool serve"),
        (
            "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    chunksize: 1048576\n",
            "storage.s3.chunksize: 1048576 is out of range: S3 parts are 5 MiB (5242880) to 5 GiB",
        ),
        ("version: 0.1\nstorage:\n  s3:\n    region: r\n", "storage.s3.bucket: no bucket parameter provided"),
        (
            "version: 0.1\nstorage:\n  inmemory:\n  maintenance:\n    uploadpurging:\n      age: 10\n",
            "storage.maintenance.uploadpurging.age: 10 has no unit: write it as distribution does, e.g. 10s, 30m or "
            "168h (distribution would read a bare number as nanoseconds)",
        ),
        (
            "version: 0.1\nstorage: inmemory\nhealth:\n  storagedriver:\n    interval: soon\n",
            "health.storagedriver.interval: 'soon' is not a duration (e.g. 10s, 30m, 168h, 1h30m)",
        ),
        ("version: 0.1\nstorage:\n  inmemory:\n  filesystem:\n", "storage: exactly one storage driver, not 2"),
        ("version: 0.1\n", "storage: no storage driver given (filesystem, inmemory or s3)"),
        ("version: 0.1\nstorage: inmemory\nlog:\n  level: loud\n", "log.level: 'loud' is not a log level"),
        ("version: 0.1\nstorage: inmemory\nhttp:\n  addr: 5000\n", "http.addr: '5000' is not HOST:PORT"),
        (
            "version: 0.1\nstorage: inmemory\nnotifications:\n  endpoints:\n    - name: a\n      url: http://x\n",
            "notifications.endpoints: webhooks are not supported by regtool serve; only disabled ones are accepted",
        ),
        ("version: 0.1\nstorage: inmemory\nauth:\n  silly:\n    realm: r\n", "auth.silly: silly auth is for"),
    ],
)
def test_unsupported_or_unknown_keys_are_named(tmp_path: Path, text: str, message: str) -> None:
    assert _error(tmp_path, text).startswith(message)


def test_an_environment_variable_that_sets_an_unsupported_key_is_named(tmp_path: Path) -> None:
    message = _error(tmp_path, "version: 0.1\nstorage: inmemory\n", {"REGISTRY_STORAGE_AZURE_ACCOUNTNAME": "a"})
    assert message == (
        "storage (from REGISTRY_STORAGE_AZURE_ACCOUNTNAME): exactly one storage driver, not 2: inmemory, azure"
    )
    message = _error(tmp_path, "version: 0.1\nstorage: inmemory\n", {"REGISTRY_HTTP_PREFIX": "/r"})
    assert message.startswith("http.prefix (from REGISTRY_HTTP_PREFIX): /r: not supported")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("storage: inmemory\n", "version: missing"),
        ("version: 0.2\nstorage: inmemory\n", "version: 0.2 is not a configuration version regtool knows (0.1)"),
        ("version: 0.1\nstorage: [\n", "not valid YAML (line 3)"),
        ("- a\n- b\n", "expected a mapping of sections"),
    ],
)
def test_a_file_that_is_not_a_configuration(tmp_path: Path, text: str, message: str) -> None:
    assert _error(tmp_path, text).startswith(message)


def test_durations_as_distribution_writes_them(tmp_path: Path) -> None:
    base = "version: 0.1\nstorage:\n  inmemory:\n  maintenance:\n    uploadpurging:\n      age: {}\n"
    for text, seconds in (("168h", 604800.0), ("1h30m", 5400.0), ("90s", 90.0), ("1.5h", 5400.0), ("500ms", 0.5)):
        values = read_config_file(_write(tmp_path, base.format(text)), {}).values
        assert values["upload_purge_age"] == seconds, text


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read configuration file .*missing\.yml"):
        read_config_file(tmp_path / "missing.yml", {})


def test_token_auth_with_regtools_signing_key_issues_and_without_it_verifies(tmp_path: Path) -> None:
    base = (
        "version: 0.1\nstorage: inmemory\nauth:\n  token:\n    realm: https://auth.example.com/token\n"
        "    service: registry\n    issuer: auth-server\n    rootcertbundle: /certs/bundle.pem\n"
    )
    issuing = read_config_file(
        _write(tmp_path, base + "    signingkey: /certs/key.pem\n    htpasswd: /etc/users\n"), {}
    ).values
    assert (issuing["token_key"], issuing["token_cert"]) == (Path("/certs/key.pem"), Path("/certs/bundle.pem"))
    assert issuing["htpasswd"] == Path("/etc/users")
    verifying = server_config_from_file(_write(tmp_path, base), {})
    assert verifying.token_auth and verifying.token_key is None and verifying.htpasswd is None
    assert verifying.token_realm == "https://auth.example.com/token"
    assert (verifying.token_service, verifying.token_issuer) == ("registry", "auth-server")
    message = _error(tmp_path, base.replace("    realm: https://auth.example.com/token\n", ""))
    assert message == (
        "auth.token.realm: missing (distribution's token auth needs realm, service, issuer, rootcertbundle)"
    )
    message = _error(tmp_path, base + "    jwks: /certs/jwks.json\n")
    assert message.startswith("auth.token.jwks: not supported by regtool serve")


# distribution's docs/configuration.md (v2.8.2): its development example, its override example, the s3 block of
# its storage reference, its middleware example.
DOCS_DEVELOPMENT = """\
version: 0.1
log:
  level: debug
storage:
    filesystem:
        rootdirectory: /var/lib/registry
http:
    addr: localhost:5000
    secret: asecretforlocaldevelopment
    debug:
        addr: localhost:5001
"""

DOCS_S3 = """\
version: 0.1
storage:
  s3:
    accesskey: awsaccesskey
    secretkey: awssecretkey
    region: us-west-1
    regionendpoint: http://myobjects.local
    bucket: bucketname
    encrypt: true
    keyid: mykeyid
    secure: true
    v4auth: true
    chunksize: 5242880
    multipartcopychunksize: 33554432
    multipartcopymaxconcurrency: 100
    multipartcopythresholdsize: 33554432
    rootdirectory: /s3/object/name/prefix
"""


def test_the_docs_development_example_and_its_override(tmp_path: Path) -> None:
    environ = {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/somewhere"}
    config = server_config_from_file(_write(tmp_path, DOCS_DEVELOPMENT), environ)
    assert (config.host, config.port, config.debug_addr) == ("localhost", 5000, "localhost:5001")
    assert config.root == Path("/somewhere")
    assert config.log_level == "debug"


def test_the_docs_s3_block_says_which_key_regtool_cannot_honour(tmp_path: Path) -> None:
    assert _error(tmp_path, DOCS_S3) == (
        "storage.s3.encrypt: true: server-side encryption is not supported by regtool serve"
    )
    # Without encryption (and its KMS key) the rest of the block is taken as written.
    text = DOCS_S3.replace("    encrypt: true\n", "").replace("    keyid: mykeyid\n", "")
    settings = read_config_file(_write(tmp_path, text), {})
    s3 = settings.values["s3"]
    assert (s3.bucket, s3.region, s3.endpoint, s3.chunk_size) == (
        "bucketname",
        "us-west-1",
        "http://myobjects.local",
        5 * 1024 * 1024,
    )
    assert s3.root_directory == "s3/object/name/prefix"
    assert sum("multipartcopy" in note for note in settings.notes) == 3


def test_the_docs_middleware_example_is_refused_by_name(tmp_path: Path) -> None:
    text = DOCS_DEVELOPMENT + (
        "middleware:\n  storage:\n  - name: cloudfront\n    disabled: false\n    options:\n"
        "      baseurl: http://d111111abcdef8.cloudfront.net\n"
    )
    assert _error(tmp_path, text) == (
        "middleware: not supported by regtool serve (its storage redirect is storage.redirect)"
    )
