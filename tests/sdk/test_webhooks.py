"""Organization webhooks through the generated WebhooksApi, and the change feed through
EventsApi: every answer must deserialize into the SDK's models."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import mixpeek
import pytest
from mixpeek.exceptions import NotFoundException, UnprocessableEntityException

import support

WEBHOOK_ID = re.compile(r"^wh_[a-f0-9]{16}$")


def webhook_input(name: str, url: str, secret: str | None = "sdk-secret") -> mixpeek.WebhookInput:
    """A WebhookInput built from plain dicts, the way SDK users build one."""
    body = {
        "webhook_name": name,
        "event_types": ["object.created", "object.deleted"],
        "channels": [
            {
                "channel": "webhook",
                "configs": {"url": url, "headers": {"X-Team": "sdk"}, "signing_secret": secret},
            }
        ],
    }
    request = mixpeek.WebhookInput.from_dict(body)
    assert request is not None
    return request


@pytest.fixture
def webhooks_api(api_client: mixpeek.ApiClient) -> mixpeek.WebhooksApi:
    return mixpeek.WebhooksApi(api_client)


@pytest.fixture
def webhook(webhooks_api: mixpeek.WebhooksApi) -> Iterator[mixpeek.WebhookOutput]:
    """A webhook to a host that never resolves, deleted after the test so that other tests'
    objects are not delivered to it for long."""
    created = webhooks_api.create_webhook_organizations(
        webhook_input(support.unique_name("hook"), "https://hooks.invalid/sluice")
    )
    assert created is not None
    yield created
    webhooks_api.delete_webhook_organizations(created.webhook_id)


def test_create_reads_back_redacted(webhook):
    assert isinstance(webhook, mixpeek.WebhookOutput)
    assert WEBHOOK_ID.match(webhook.webhook_id)
    assert webhook.is_active is True
    assert [t.value for t in webhook.event_types] == ["object.created", "object.deleted"]
    configs = webhook.channels[0].configs.actual_instance
    assert isinstance(configs, mixpeek.WebhookConfig)
    assert configs.signing_secret == "redacted"
    assert configs.headers == {"X-Team": "sdk"}
    assert webhook.delivery_health["consecutive_failures"] == 0
    assert webhook.created_at is not None and webhook.updated_at is not None


def test_get_list_update_and_delete(webhooks_api, webhook):
    got = webhooks_api.get_webhook_organizations(webhook.webhook_id)
    assert isinstance(got, mixpeek.WebhookOutput)
    assert got.webhook_name == webhook.webhook_name
    by_name = webhooks_api.get_webhook_organizations(webhook.webhook_name)
    assert by_name.webhook_id == webhook.webhook_id

    listing = webhooks_api.list_webhooks_organizations(
        limit=100,
        list_webhooks_request=mixpeek.ListWebhooksRequest(event_type="object.deleted"),
    )
    assert isinstance(listing, mixpeek.ListWebhooksResponse)
    assert isinstance(listing.pagination, mixpeek.PaginationResponse)
    assert listing.total >= 1
    assert webhook.webhook_id in {w.webhook_id for w in listing.results}
    inactive = webhooks_api.list_webhooks_organizations(
        list_webhooks_request=mixpeek.ListWebhooksRequest(is_active=False)
    )
    assert webhook.webhook_id not in {w.webhook_id for w in inactive.results}

    # "redacted" keeps the secret; a deactivated webhook lists as inactive.
    change = webhook_input(webhook.webhook_name, "https://hooks.invalid/v2", secret="redacted")
    change.is_active = False
    updated = webhooks_api.update_webhook_organizations(webhook.webhook_id, change)
    assert isinstance(updated, mixpeek.WebhookOutput)
    assert updated.is_active is False
    configs = updated.channels[0].configs.actual_instance
    assert configs.url == "https://hooks.invalid/v2"
    assert configs.signing_secret == "redacted"

    webhooks_api.delete_webhook_organizations(webhook.webhook_id)
    webhooks_api.delete_webhook_organizations(webhook.webhook_id)
    with pytest.raises(NotFoundException) as caught:
        webhooks_api.get_webhook_organizations(webhook.webhook_id)
    support.error_of(caught.value, 404)


def test_private_url_is_refused(webhooks_api):
    with pytest.raises(UnprocessableEntityException) as caught:
        webhooks_api.create_webhook_organizations(
            webhook_input(support.unique_name("hook"), "http://127.0.0.1:9/private")
        )
    support.error_of(caught.value, 422)


def test_other_tenant_cannot_see_the_webhook(webhook, other_tenant):
    with pytest.raises(NotFoundException):
        mixpeek.WebhooksApi(other_tenant.client).get_webhook_organizations(webhook.webhook_id)


def test_list_events_of_the_namespace(api_client, namespace, bucket, objects_api):
    created = objects_api.create_object_buckets(
        bucket.bucket_id, support.object_request(title="evented")
    )
    objects_api.delete_object_buckets(bucket.bucket_id, created.object_id)

    events_api = mixpeek.EventsApi(api_client)
    # PostgreSQL shows an event about a second after it was recorded.
    deadline = time.monotonic() + 15
    while True:
        feed = events_api.list_events(limit=100)
        assert isinstance(feed, mixpeek.ListEventsResponse)
        if len(feed.results) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert all(isinstance(e, mixpeek.ChangeEventResponse) for e in feed.results)
    assert [e.event_type for e in feed.results] == ["object.created", "object.deleted"]
    first = feed.results[0]
    assert first.namespace_id == namespace.namespace_id
    assert first.resource_type == "object"
    assert first.operation == "insert"
    assert first.payload["object_id"] == created.object_id
    assert feed.has_more is False

    deleted = mixpeek.WebhookEventType.OBJECT_DOT_DELETED
    page = events_api.list_events(page_size=1, event_type=deleted)
    assert [e.event_type for e in page.results] == ["object.deleted"]
    after = events_api.list_events(next_cursor=feed.next_cursor)
    assert after.results == []
    assert after.next_cursor == feed.next_cursor
