"""Fixtures for the official-SDK compatibility suite.

Every test runs against a real `sluice serve` process, once per metadata backend:

* ``sqlite``: a fresh temporary data directory;
* ``postgres``: a fresh database, created before the server starts and dropped after it
  stops, on the server named by ``SLUICE_TEST_POSTGRES_URL`` (scripts/postgres.sh prints one);
* ``s3``: SQLite metadata with the blobs in a fresh bucket of the S3 emulator named by
  ``SLUICE_TEST_S3_ENDPOINT`` (scripts/services.sh runs one).

One server per backend serves the whole session; tests isolate themselves by creating their own
namespace (and, where they need one, a second organization through the admin CLI).

Options and environment:

* ``--backend sqlite --backend postgres`` picks the backends (default: both). A backend that
  cannot start is an error, never a skip.
* ``SLUICE_BIN``: the binary (default: ``$CARGO_TARGET_DIR/debug/sluice``, with
  ``CARGO_TARGET_DIR`` defaulting to ``~/.cache/sluice-target``).
* ``SLUICE_TEST_LOG``: the server's ``SLUICE_LOG`` filter (default ``info``).

When a test fails, the server's log lines written during that test are attached to the report.
harness.py starts and stops servers and stores; support.py holds the names, schemas and
checks that the tests share.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import mixpeek
import pytest

# Plain asserts in harness.py and support.py report their operands, as in the tests.
pytest.register_assert_rewrite("harness", "support")

import support  # noqa: E402
from harness import Server, fresh_store, running_server, sluice_binary  # noqa: E402

BACKENDS = ("sqlite", "postgres", "s3")
LOG_OFFSET = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="metadata backend to run the suite against (repeatable; default: all)",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    binary = sluice_binary()
    if not binary.is_file():
        pytest.exit(
            f"the sluice binary is not at {binary}: build it with `cargo build` "
            "or point SLUICE_BIN at it",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
    if "s3" in selected_backends(session.config) and not os.environ.get(
        "SLUICE_TEST_S3_ENDPOINT"
    ):
        pytest.exit(
            "SLUICE_TEST_S3_ENDPOINT is not set: run `eval \"$(scripts/services.sh up)\"`, "
            "or leave out --backend s3",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
    if "postgres" in selected_backends(session.config) and not os.environ.get(
        "SLUICE_TEST_POSTGRES_URL"
    ):
        pytest.exit(
            "SLUICE_TEST_POSTGRES_URL is not set: run `scripts/postgres.sh` and export what it "
            "prints, or pass --backend sqlite",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = selected_backends(metafunc.config)
        metafunc.parametrize("backend", backends, ids=backends, indirect=True, scope="session")


def selected_backends(config: pytest.Config) -> list[str]:
    chosen = config.getoption("--backend") or list(BACKENDS)
    return [b for b in BACKENDS if b in chosen]


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A sluice server on a fresh store of the given backend, for the whole session."""
    workdir = tmp_path_factory.mktemp(f"sluice-{backend}")
    with (
        fresh_store(backend) as database_url,
        running_server(backend, workdir, database_url) as srv,
    ):
        yield srv


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    result = yield
    srv = getattr(item, "funcargs", {}).get("server")
    if isinstance(srv, Server):
        item.stash[LOG_OFFSET] = srv.log_size()
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    srv = getattr(item, "funcargs", {}).get("server")
    if report.failed and isinstance(srv, Server):
        offset = item.stash.get(LOG_OFFSET, max(0, srv.log_size() - 20000))
        report.sections.append((f"sluice log ({srv.backend})", srv.log_since(offset)[-20000:]))
    return report


# ---------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def api_client(server: Server) -> Iterator[mixpeek.ApiClient]:
    """The generated SDK client, authenticated with the bootstrap key, no namespace yet."""
    config = mixpeek.Configuration(host=server.base_url, access_token=server.api_key)
    with mixpeek.ApiClient(config) as client:
        yield client


@pytest.fixture
def namespace(api_client: mixpeek.ApiClient) -> mixpeek.NamespaceModel:
    """A fresh namespace; the generated client sends its id as X-Namespace from now on."""
    created = mixpeek.NamespacesApi(api_client).create_namespace(
        mixpeek.CreateNamespaceRequest(
            namespace_name=support.unique_name("ns"), description="sdk suite"
        )
    )
    assert created is not None and created.namespace_id
    api_client.configuration.api_key["NamespaceHeader"] = created.namespace_id
    return created


@pytest.fixture
def namespaces_api(api_client: mixpeek.ApiClient) -> mixpeek.NamespacesApi:
    return mixpeek.NamespacesApi(api_client)


@pytest.fixture
def buckets_api(api_client: mixpeek.ApiClient) -> mixpeek.BucketsApi:
    return mixpeek.BucketsApi(api_client)


@pytest.fixture
def objects_api(api_client: mixpeek.ApiClient) -> mixpeek.BucketObjectsApi:
    return mixpeek.BucketObjectsApi(api_client)


@pytest.fixture
def tasks_api(api_client: mixpeek.ApiClient) -> mixpeek.TasksApi:
    return mixpeek.TasksApi(api_client)


@pytest.fixture
def bucket(
    buckets_api: mixpeek.BucketsApi, namespace: mixpeek.NamespaceModel
) -> mixpeek.BucketResponse:
    """A bucket with the suite's standard schema (support.STANDARD_SCHEMA) in `namespace`."""
    created = buckets_api.create_bucket(support.bucket_request(support.unique_name("bucket")))
    assert created is not None and created.bucket_id
    return created


@pytest.fixture
def mp(server: Server, namespace: mixpeek.NamespaceModel) -> mixpeek.Mixpeek:
    """The hand-written `mixpeek.Mixpeek` wrapper, scoped to `namespace`."""
    return mixpeek.Mixpeek(
        api_key=server.api_key, base_url=f"{server.base_url}/v1", namespace=namespace.namespace_id
    )


@pytest.fixture
def http(server: Server) -> support.Http:
    """Plain HTTP with the bootstrap key, for what the SDK has no method for."""
    return support.Http(server.base_url, server.api_key)


@dataclass
class OtherTenant:
    """A second organization with its own key, created through the admin CLI."""

    organization_id: str
    api_key: str
    client: mixpeek.ApiClient


@pytest.fixture
def other_tenant(server: Server) -> Iterator[OtherTenant]:
    organization_id = server.admin("org", "create", support.unique_name("other-org"))
    assert organization_id.startswith("org_"), organization_id
    api_key = server.admin("key", "create", "--org", organization_id, "--name", "sdk-suite")
    assert api_key.startswith("sk_"), api_key
    config = mixpeek.Configuration(host=server.base_url, access_token=api_key)
    with mixpeek.ApiClient(config) as client:
        yield OtherTenant(organization_id, api_key, client)
