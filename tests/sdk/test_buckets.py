"""Buckets through the generated BucketsApi and the Mixpeek wrapper."""

from __future__ import annotations

import datetime as dt

import mixpeek
import pytest
from mixpeek.exceptions import (
    ApiException,
    BadRequestException,
    ConflictException,
    NotFoundException,
    UnprocessableEntityException,
)

import support


def test_create_returns_the_bucket(buckets_api, namespace):
    name = support.unique_name("bucket")

    bucket = buckets_api.create_bucket(
        support.bucket_request(
            name,
            description="photos and notes",
            metadata={"team": "search", "tier": 2},
            storage_class="nearline",
        )
    )

    assert isinstance(bucket, mixpeek.BucketResponse)
    assert bucket.bucket_id.startswith("bkt_")
    assert bucket.bucket_name == name
    assert bucket.description == "photos and notes"
    assert bucket.metadata == {"team": "search", "tier": 2}
    assert bucket.storage_class == mixpeek.StorageClass.NEARLINE
    assert bucket.object_count == 0
    assert bucket.total_size_bytes == 0
    assert isinstance(bucket.created_at, dt.datetime)
    properties = bucket.bucket_schema.properties
    assert set(properties) == set(support.STANDARD_SCHEMA["properties"])
    assert properties["rank"].type == mixpeek.BucketSchemaFieldType.INTEGER
    assert properties["content"].type == mixpeek.BucketSchemaFieldType.TEXT
    assert properties["image"].type == mixpeek.BucketSchemaFieldType.IMAGE
    assert properties["title"].description == "a human title"


def test_storage_class_defaults_to_standard(buckets_api, namespace):
    bucket = buckets_api.create_bucket(support.bucket_request(support.unique_name("bucket")))

    assert bucket.storage_class in (None, mixpeek.StorageClass.STANDARD)


def test_get_returns_what_create_returned(buckets_api, bucket):
    fetched = buckets_api.get_bucket(bucket.bucket_id)

    for field in (
        "bucket_id", "bucket_name", "description", "metadata", "storage_class", "unique_key",
        "object_count", "total_size_bytes", "created_at",
    ):  # fmt: skip
        assert getattr(fetched, field) == getattr(bucket, field), field
    assert fetched.bucket_schema.to_dict() == bucket.bucket_schema.to_dict()


def test_unknown_bucket_is_not_found(buckets_api, namespace):
    with pytest.raises(NotFoundException) as caught:
        buckets_api.get_bucket("bkt_doesnotexist")

    support.error_of(caught.value, 404)


def test_duplicate_name_in_a_namespace_is_a_conflict(buckets_api, bucket):
    with pytest.raises(ConflictException) as caught:
        buckets_api.create_bucket(support.bucket_request(bucket.bucket_name))

    support.error_of(caught.value, 409)


def test_same_name_in_another_namespace_is_fine(buckets_api, namespaces_api, bucket):
    other = namespaces_api.create_namespace(
        mixpeek.CreateNamespaceRequest(namespace_name=support.unique_name("ns"))
    )
    buckets_api.api_client.configuration.api_key["NamespaceHeader"] = other.namespace_name

    twin = buckets_api.create_bucket(support.bucket_request(bucket.bucket_name))

    assert twin.bucket_id != bucket.bucket_id
    with pytest.raises(NotFoundException):
        buckets_api.get_bucket(bucket.bucket_id)


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": {"title": {"type": "no-such-type"}}},
        {"properties": {"title": {"description": "no type"}}},
        {"no_properties": {}},
    ],
    ids=["unknown-type", "missing-type", "missing-properties"],
)
def test_invalid_schema_is_unprocessable(http, namespace, schema):
    # The SDK refuses these schemas itself, so they go out as plain JSON.
    response = http.request(
        "POST",
        "/v1/buckets",
        namespace=namespace.namespace_id,
        json={"bucket_name": support.unique_name("bucket"), "bucket_schema": schema},
    )

    support.assert_envelope(response, 422)


def test_unique_key_on_an_unknown_field_is_refused(buckets_api, namespace):
    request = support.bucket_request(
        support.unique_name("bucket"), unique_key={"fields": ["no_such_field"]}
    )

    with pytest.raises((UnprocessableEntityException, BadRequestException)) as caught:
        buckets_api.create_bucket(request)

    envelope = support.error_of(caught.value, caught.value.status)
    assert "no_such_field" in envelope.error.message or "no_such_field" in support.dump(envelope)


def test_list_post_and_get(buckets_api, namespace):
    names = sorted(support.unique_name("bucket") for _ in range(3))
    created = [buckets_api.create_bucket(support.bucket_request(n)) for n in names]

    posted = buckets_api.list_buckets(list_buckets_request=mixpeek.ListBucketsRequest())
    got = buckets_api.list_buckets_get()

    for listing in (posted, got):
        assert isinstance(listing, mixpeek.ListBucketsResponse)
        assert isinstance(listing.pagination, mixpeek.PaginationResponse)
        assert {b.bucket_id for b in listing.results} == {b.bucket_id for b in created}
        assert listing.total_count == 3


def test_list_without_a_body(buckets_api, namespace, bucket):
    listing = buckets_api.list_buckets()

    assert [b.bucket_id for b in listing.results] == [bucket.bucket_id]


def test_list_search_and_limit(buckets_api, namespace):
    wanted = buckets_api.create_bucket(support.bucket_request(support.unique_name("needle")))
    buckets_api.create_bucket(support.bucket_request(support.unique_name("hay")))
    buckets_api.create_bucket(support.bucket_request(support.unique_name("hay")))

    searched = buckets_api.list_buckets_get(search="needle")
    limited = buckets_api.list_buckets(list_buckets_request=mixpeek.ListBucketsRequest(limit=2))

    assert [b.bucket_id for b in searched.results] == [wanted.bucket_id]
    assert len(limited.results) == 2
    assert limited.total_count == 3


def test_list_filters_by_name(buckets_api, namespace, bucket):
    buckets_api.create_bucket(support.bucket_request(support.unique_name("other")))

    listing = buckets_api.list_buckets(
        list_buckets_request=mixpeek.ListBucketsRequest(filters={"bucket_name": bucket.bucket_name})
    )

    assert [b.bucket_id for b in listing.results] == [bucket.bucket_id]


def test_put_updates_fields(buckets_api, bucket):
    updated = buckets_api.update_bucket(
        bucket.bucket_id,
        mixpeek.BucketUpdateRequest(
            description="updated", metadata={"owner": "qa"}, storage_class="coldline"
        ),
    )

    assert updated.bucket_id == bucket.bucket_id
    assert updated.bucket_name == bucket.bucket_name
    assert updated.description == "updated"
    assert updated.metadata == {"owner": "qa"}
    assert updated.storage_class == mixpeek.StorageClass.COLDLINE
    fetched = buckets_api.get_bucket(bucket.bucket_id)
    assert (fetched.description, fetched.storage_class) == ("updated", "coldline")


def test_patch_renames_and_keeps_the_rest(buckets_api, namespace):
    bucket = buckets_api.create_bucket(
        support.bucket_request(support.unique_name("bucket"), description="kept")
    )
    new_name = support.unique_name("renamed")

    patched = buckets_api.patch_bucket(
        bucket.bucket_id, mixpeek.BucketPatchRequest(bucket_name=new_name)
    )

    assert patched.bucket_name == new_name
    assert patched.description == "kept"
    assert set(patched.bucket_schema.properties) == set(support.STANDARD_SCHEMA["properties"])


def test_rename_onto_a_taken_name_is_a_conflict(buckets_api, bucket):
    other = buckets_api.create_bucket(support.bucket_request(support.unique_name("bucket")))

    with pytest.raises(ConflictException) as caught:
        buckets_api.patch_bucket(
            other.bucket_id, mixpeek.BucketPatchRequest(bucket_name=bucket.bucket_name)
        )

    support.error_of(caught.value, 409)
    assert buckets_api.get_bucket(other.bucket_id).bucket_name == other.bucket_name


def test_patch_can_add_a_schema_field(buckets_api, bucket):
    schema = {"properties": {**support.STANDARD_SCHEMA["properties"], "year": {"type": "integer"}}}

    patched = buckets_api.patch_bucket(
        bucket.bucket_id, mixpeek.BucketPatchRequest.from_dict({"bucket_schema": schema})
    )

    assert patched.bucket_schema.properties["year"].type == mixpeek.BucketSchemaFieldType.INTEGER


@pytest.mark.parametrize(
    "change",
    [
        {"rank": {"type": "string"}},  # a field changes type
        {"rank": None},  # a field disappears
    ],
    ids=["retype", "remove"],
)
def test_breaking_schema_change_needs_force(buckets_api, objects_api, bucket, change):
    objects_api.create_object_buckets(bucket.bucket_id, support.object_request(rank=1))
    properties = {**support.STANDARD_SCHEMA["properties"], **change}
    schema = {"properties": {k: v for k, v in properties.items() if v is not None}}
    patch = mixpeek.BucketPatchRequest.from_dict({"bucket_schema": schema})

    # The contract leaves the status open (the upstream docs do not name it).
    with pytest.raises(ApiException) as caught:
        buckets_api.patch_bucket(bucket.bucket_id, patch)
    assert caught.value.status in (400, 409, 422)
    support.error_of(caught.value, caught.value.status)
    unchanged = buckets_api.get_bucket(bucket.bucket_id).bucket_schema.properties
    assert unchanged["rank"].type == mixpeek.BucketSchemaFieldType.INTEGER

    forced = buckets_api.patch_bucket(bucket.bucket_id, patch, force_schema_break=True)
    assert set(forced.bucket_schema.properties) == set(schema["properties"])


def test_invalid_storage_class_is_unprocessable(http, namespace, bucket):
    # The SDK checks the enum itself, so the bad value goes out as plain JSON.
    response = http.request(
        "PUT",
        f"/v1/buckets/{bucket.bucket_id}",
        namespace=namespace.namespace_id,
        json={"storage_class": "glacier"},
    )

    support.assert_envelope(response, 422)


def test_delete_runs_a_task_and_removes_objects(buckets_api, objects_api, tasks_api, bucket):
    objects_api.create_object_buckets(bucket.bucket_id, support.object_request(title="a"))
    objects_api.create_object_buckets(bucket.bucket_id, support.object_request(title="b"))

    answer = buckets_api.delete_bucket(bucket.bucket_id)

    assert isinstance(answer, dict), answer
    assert answer["bucket_id"] == bucket.bucket_id
    assert answer["bucket_name"] == bucket.bucket_name
    assert answer["object_count"] == 2
    assert answer["status"] in {s.value for s in mixpeek.TaskStatusEnum}
    task = support.wait_for_task(tasks_api, answer["task_id"])
    assert task.status == mixpeek.TaskStatusEnum.COMPLETED, support.dump(task)
    assert task.task_type == mixpeek.TaskType.API_BUCKETS_DELETE
    with pytest.raises(NotFoundException) as caught:
        buckets_api.get_bucket(bucket.bucket_id)
    support.error_of(caught.value, 404)
    with pytest.raises(NotFoundException):
        objects_api.list_objects_get_buckets(bucket.bucket_id)


def test_other_organization_gets_not_found(other_tenant, namespace, bucket):
    # The other organization names our namespace; it must not resolve for them.
    other_tenant.client.configuration.api_key["NamespaceHeader"] = namespace.namespace_id
    theirs = mixpeek.BucketsApi(other_tenant.client)

    with pytest.raises(NotFoundException) as caught:
        theirs.get_bucket(bucket.bucket_id)
    support.error_of(caught.value, 404)
    with pytest.raises(NotFoundException):
        theirs.delete_bucket(bucket.bucket_id)

    # Nor does our bucket show up through a namespace of their own.
    own = mixpeek.NamespacesApi(other_tenant.client).create_namespace(
        mixpeek.CreateNamespaceRequest(namespace_name=support.unique_name("theirs"))
    )
    other_tenant.client.configuration.api_key["NamespaceHeader"] = own.namespace_id
    with pytest.raises(NotFoundException):
        theirs.get_bucket(bucket.bucket_id)
    assert theirs.list_buckets().results == []


def test_wrapper_bucket_lifecycle(mp, tasks_api):
    name = support.unique_name("wrapped")

    created = mp.buckets.create(bucket_name=name, bucket_schema=support.STANDARD_SCHEMA)
    assert created.bucket_id.startswith("bkt_")
    assert created.object_count == 0

    assert mp.buckets.get(created.bucket_id)["bucket_name"] == name
    listing = mp.buckets.list()  # POST /v1/buckets/list with no body
    assert [b["bucket_id"] for b in listing["results"]] == [created.bucket_id]

    deleted = mp.buckets.delete(created.bucket_id)
    assert mp.tasks.get(deleted["task_id"])["task_id"] == deleted["task_id"]
    assert support.wait_for_task(tasks_api, deleted["task_id"]).status == "COMPLETED"
    with pytest.raises(support.MixpeekAPIError) as caught:
        mp.buckets.get(created.bucket_id)
    assert caught.value.status == 404


def test_responses_are_json(http, namespace, bucket):
    response = http.request(
        "GET", f"/v1/buckets/{bucket.bucket_id}", namespace=namespace.namespace_id
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["bucket_id"] == bucket.bucket_id
