"""Buckets with a unique_key: the ?policy= insert/update/upsert rules and the default policy."""

from __future__ import annotations

import mixpeek
import pytest
from mixpeek.exceptions import (
    BadRequestException,
    ConflictException,
    NotFoundException,
    UnprocessableEntityException,
)

import support


@pytest.fixture
def keyed_bucket(buckets_api, namespace) -> mixpeek.BucketResponse:
    """A bucket whose objects are unique by `sku`, with no default policy."""
    bucket = buckets_api.create_bucket(
        support.bucket_request(support.unique_name("keyed"), unique_key={"fields": ["sku"]})
    )
    assert bucket.unique_key is not None and bucket.unique_key.fields == ["sku"]
    return bucket


def put(objects_api, bucket, policy=None, **fields) -> mixpeek.ObjectResponse:
    created = objects_api.create_object_buckets(
        bucket.bucket_id, support.object_request(**fields), policy=policy
    )
    assert isinstance(created, mixpeek.ObjectResponse)
    return created


def count(objects_api, bucket) -> int:
    return len(objects_api.list_objects_get_buckets(bucket.bucket_id).results)


def test_without_a_policy_is_a_bad_request(objects_api, keyed_bucket):
    with pytest.raises(BadRequestException) as caught:
        put(objects_api, keyed_bucket, sku="A-1")

    support.error_of(caught.value, 400)
    assert count(objects_api, keyed_bucket) == 0


def test_insert_creates_then_conflicts(objects_api, keyed_bucket):
    first = put(objects_api, keyed_bucket, "insert", sku="A-1", title="first")

    with pytest.raises(ConflictException) as caught:
        put(objects_api, keyed_bucket, "insert", sku="A-1", title="second")

    support.error_of(caught.value, 409)
    fetched = objects_api.get_object_buckets(keyed_bucket.bucket_id, first.object_id)
    assert fetched.additional_properties["title"] == "first"
    assert count(objects_api, keyed_bucket) == 1


def test_update_needs_an_existing_key(objects_api, keyed_bucket):
    with pytest.raises(NotFoundException) as caught:
        put(objects_api, keyed_bucket, "update", sku="missing", title="x")
    support.error_of(caught.value, 404)

    original = put(objects_api, keyed_bucket, "insert", sku="B-2", title="before", rank=1)
    updated = put(objects_api, keyed_bucket, "update", sku="B-2", title="after")

    assert updated.object_id == original.object_id
    assert updated.additional_properties["title"] == "after"
    assert count(objects_api, keyed_bucket) == 1


def test_upsert_creates_once_and_then_updates(objects_api, keyed_bucket):
    created = put(objects_api, keyed_bucket, "upsert", sku="C-3", title="v1")
    again = put(objects_api, keyed_bucket, "upsert", sku="C-3", title="v2")
    other = put(objects_api, keyed_bucket, "upsert", sku="C-4", title="v1")

    assert again.object_id == created.object_id
    assert again.additional_properties["title"] == "v2"
    assert other.object_id != created.object_id
    assert count(objects_api, keyed_bucket) == 2


def test_default_policy_applies_without_a_query(objects_api, buckets_api, namespace):
    bucket = buckets_api.create_bucket(
        support.bucket_request(
            support.unique_name("keyed"), unique_key={"fields": ["sku"], "default_policy": "upsert"}
        )
    )
    assert bucket.unique_key.default_policy == "upsert"

    created = put(objects_api, bucket, sku="D-5", title="v1")
    again = put(objects_api, bucket, sku="D-5", title="v2")
    with pytest.raises(ConflictException):
        put(objects_api, bucket, "insert", sku="D-5", title="v3")

    assert again.object_id == created.object_id
    assert count(objects_api, bucket) == 1


def test_unknown_policy_is_refused(http, namespace, keyed_bucket):
    response = http.request(
        "POST",
        f"/v1/buckets/{keyed_bucket.bucket_id}/objects?policy=sometimes",
        namespace=namespace.namespace_id,
        json={"sku": "E-6"},
    )

    assert response.status_code in (400, 422), response.text
    support.assert_envelope(response, response.status_code)


def test_keys_are_per_bucket(objects_api, buckets_api, keyed_bucket):
    twin = buckets_api.create_bucket(
        support.bucket_request(support.unique_name("keyed"), unique_key={"fields": ["sku"]})
    )

    here = put(objects_api, keyed_bucket, "insert", sku="F-7")
    there = put(objects_api, twin, "insert", sku="F-7")

    assert here.object_id != there.object_id


def test_deleted_object_frees_its_key(objects_api, keyed_bucket):
    gone = put(objects_api, keyed_bucket, "insert", sku="G-8")
    objects_api.delete_object_buckets(keyed_bucket.bucket_id, gone.object_id)

    again = put(objects_api, keyed_bucket, "insert", sku="G-8")

    assert again.object_id != gone.object_id


def test_batch_create_is_refused_on_keyed_buckets(objects_api, keyed_bucket):
    with pytest.raises(UnprocessableEntityException) as caught:
        objects_api.create_objects_batch_buckets(
            keyed_bucket.bucket_id,
            mixpeek.CreateObjectsBatchRequest.from_dict({"objects": [{"sku": "H-9"}]}),
        )

    assert caught.value.status == 422
    assert count(objects_api, keyed_bucket) == 0


def test_unique_key_cannot_change_fields_after_create(buckets_api, keyed_bucket):
    with pytest.raises((UnprocessableEntityException, BadRequestException)) as caught:
        buckets_api.update_bucket(
            keyed_bucket.bucket_id,
            mixpeek.BucketUpdateRequest.from_dict({"unique_key": {"fields": ["title"]}}),
        )

    support.error_of(caught.value, caught.value.status)
    assert buckets_api.get_bucket(keyed_bucket.bucket_id).unique_key.fields == ["sku"]
