"""Storage connections through the generated OrganizationConnectionsApi: every answer must
deserialize into the SDK's models, and no answer or log line may carry a credential."""

from __future__ import annotations

import os
import re

import mixpeek
import pytest
from mixpeek.exceptions import BadRequestException, NotFoundException, UnprocessableEntityException

import harness
import support

CONNECTION_ID = re.compile(r"^conn_[A-Za-z0-9]{15}$")
HEADER_TOKEN = "Bearer sdk-feed-token-7"


@pytest.fixture
def connections_api(api_client: mixpeek.ApiClient) -> mixpeek.OrganizationConnectionsApi:
    return mixpeek.OrganizationConnectionsApi(api_client)


def shown(model) -> str:
    """Everything a model holds, as text to search for credentials."""
    return repr(model.to_dict())


def create_request(body: dict) -> mixpeek.StorageConnectionCreateRequest:
    request = mixpeek.StorageConnectionCreateRequest.from_dict(body)
    assert request is not None
    return request


def feed_body(name: str) -> dict:
    return {
        "name": name,
        "provider_type": "rss",
        "provider_config": {
            "credentials": {"type": "http_headers", "headers": {"Authorization": HEADER_TOKEN}},
        },
        "metadata": {"team": "news"},
    }


def test_feed_connection_lifecycle(connections_api, server):
    log_offset = server.log_size()
    name = support.unique_name("feed")
    request = create_request(feed_body(name))
    created = connections_api.create_storage_connection_organizations(request)
    assert isinstance(created, mixpeek.StorageConnectionModel)
    assert CONNECTION_ID.match(created.connection_id)
    assert created.provider_type == mixpeek.StorageProvider.RSS
    assert created.status == mixpeek.TaskStatusEnum.ACTIVE
    assert created.is_active is True
    assert created.created_by_user_id.startswith("usr_")
    assert created.metadata == {"team": "news"}
    assert HEADER_TOKEN not in shown(created)

    by_name = connections_api.get_storage_connection_organizations(name)
    assert by_name.connection_id == created.connection_id

    tested = connections_api.test_storage_connection_organizations(created.connection_id)
    assert isinstance(tested, mixpeek.StorageConnectionTestResponse)
    assert tested.success is True

    update = mixpeek.StorageConnectionUpdateRequest.from_dict({"description": "morning feed"})
    updated = connections_api.update_storage_connection_organizations(created.connection_id, update)
    assert updated.description == "morning feed"
    assert HEADER_TOKEN not in shown(updated)

    listed = connections_api.list_storage_connections_organizations(
        list_storage_connections_request=mixpeek.ListStorageConnectionsRequest(
            provider_type=mixpeek.StorageProvider.RSS
        )
    )
    assert isinstance(listed, mixpeek.StorageConnectionListResponse)
    assert created.connection_id in [c.connection_id for c in listed.results]
    assert all(c.provider_type == mixpeek.StorageProvider.RSS for c in listed.results)
    assert HEADER_TOKEN not in shown(listed)

    deleted = connections_api.delete_storage_connection_organizations(created.connection_id)
    assert deleted["connection_id"] == created.connection_id
    archived = connections_api.get_storage_connection_organizations(created.connection_id)
    assert archived.status == mixpeek.TaskStatusEnum.ARCHIVED
    with pytest.raises(NotFoundException):
        connections_api.get_storage_connection_organizations(name)

    assert HEADER_TOKEN not in server.log_since(log_offset)


def test_unsupported_and_invalid_connections_are_refused(connections_api):
    body = {"name": support.unique_name("box"), "provider_type": "box", "provider_config": {}}
    with pytest.raises(UnprocessableEntityException) as refused:
        connections_api.create_storage_connection_organizations(create_request(body))
    assert "supported providers" in refused.value.body
    body = {"name": support.unique_name("s3"), "provider_type": "s3", "provider_config": {}}
    with pytest.raises(UnprocessableEntityException):
        connections_api.create_storage_connection_organizations(create_request(body))


@pytest.mark.skipif(
    "SLUICE_TEST_S3S_ENDPOINT" not in os.environ, reason="needs s3s-fs from scripts/services.sh"
)
def test_s3_credentials_are_checked_before_saving(tmp_path_factory, backend):
    """Against s3s-fs, which verifies every signature: a wrong secret is refused, the right one
    is saved and its test lists the buckets."""
    endpoint = os.environ["SLUICE_TEST_S3S_ENDPOINT"]
    key_id = os.environ["SLUICE_TEST_S3S_ACCESS_KEY_ID"]
    secret = os.environ["SLUICE_TEST_S3S_SECRET_ACCESS_KEY"]
    workdir = tmp_path_factory.mktemp("connections")
    allow = {"SLUICE_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8"}

    def body(secret_key: str) -> dict:
        return {
            "name": "footage",
            "provider_type": "s3",
            "provider_config": {
                "endpoint_url": endpoint,
                "credentials": {
                    "type": "access_key",
                    "access_key_id": key_id,
                    "secret_access_key": secret_key,
                },
            },
        }

    with (
        harness.fresh_store(backend) as database_url,
        harness.running_server(backend, workdir, database_url, extra_env=allow) as srv,
        mixpeek.ApiClient(
            mixpeek.Configuration(host=srv.base_url, access_token=srv.api_key)
        ) as api,
    ):
        connections = mixpeek.OrganizationConnectionsApi(api)
        with pytest.raises(BadRequestException) as refused:
            connections.create_storage_connection_organizations(create_request(body("wrong")))
        assert "SignatureDoesNotMatch" in refused.value.body
        created = connections.create_storage_connection_organizations(create_request(body(secret)))
        assert created.provider_config.actual_instance is not None
        assert secret not in shown(created)
        tested = connections.test_storage_connection_organizations(created.connection_id)
        assert tested.success is True, tested.message
        assert secret not in srv.log_path.read_text(errors="replace")
