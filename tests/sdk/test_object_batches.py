"""Batch object creation (partial success, total failure, limits, replays) and bulk soft delete."""

from __future__ import annotations

import json

import mixpeek
import pytest
from mixpeek.exceptions import NotFoundException, UnprocessableEntityException

import support


def batch_request(*objects: dict) -> mixpeek.CreateObjectsBatchRequest:
    request = mixpeek.CreateObjectsBatchRequest.from_dict({"objects": list(objects)})
    assert request is not None
    return request


def test_batch_partial_success(objects_api, bucket):
    answer = objects_api.create_objects_batch_buckets(
        bucket.bucket_id,
        batch_request(
            {"title": "good one", "blobs": [support.text_blob("hello")]},
            {"title": "bad one", "blobs": [{"property": "nope", "type": "text", "data": "x"}]},
            {"title": "good two", "metadata": {"n": 2}},
        ),
    )

    assert isinstance(answer, mixpeek.CreateObjectsBatchResponse)
    assert (answer.total_requested, answer.succeeded_count, answer.failed_count) == (3, 2, 1)
    assert sorted(o.object_index for o in answer.succeeded) == [0, 2]
    [failure] = answer.failed
    assert failure.object_index == 1
    assert failure.error and failure.error_type
    for result in answer.succeeded:
        assert result.object_id.startswith("obj_")
        assert result.bucket_id == bucket.bucket_id
        assert result.replayed is False
    by_index = {o.object_index: o for o in answer.succeeded}
    assert by_index[0].additional_properties["title"] == "good one"
    assert by_index[0].blobs[0].var_property == "content"
    assert by_index[2].additional_properties["metadata"] == {"n": 2}

    listing = objects_api.list_objects_get_buckets(bucket.bucket_id)
    assert {o.object_id for o in listing.results} == {o.object_id for o in answer.succeeded}


def test_batch_where_every_object_fails_is_unprocessable(objects_api, bucket):
    with pytest.raises(UnprocessableEntityException) as caught:
        objects_api.create_objects_batch_buckets(
            bucket.bucket_id,
            batch_request(
                {"blobs": [{"property": "nope", "type": "text", "data": "x"}]},
                {"rank": "not a number"},
            ),
        )

    # The body keeps the batch shape, so the failures can be read and fixed.
    body = json.loads(caught.value.body)
    assert body["succeeded"] == []
    assert [f["object_index"] for f in body["failed"]] == [0, 1]
    assert (body["total_requested"], body["succeeded_count"], body["failed_count"]) == (2, 0, 2)
    assert objects_api.list_objects_get_buckets(bucket.bucket_id).results == []


def test_batch_of_more_than_100_is_refused(http, namespace, bucket):
    # The SDK refuses 101 objects itself, so the request goes out as plain HTTP.
    response = http.request(
        "POST",
        f"/v1/buckets/{bucket.bucket_id}/objects/batch",
        namespace=namespace.namespace_id,
        json={"objects": [{"rank": i} for i in range(101)]},
    )

    support.assert_envelope(response, 422)


def test_batch_of_exactly_100_is_accepted(objects_api, bucket):
    answer = objects_api.create_objects_batch_buckets(
        bucket.bucket_id, batch_request(*({"rank": i} for i in range(100)))
    )

    assert answer.succeeded_count == 100
    assert len({o.object_id for o in answer.succeeded}) == 100


def test_batch_replays_idempotency_keys(objects_api, bucket):
    first = objects_api.create_object_buckets(
        bucket.bucket_id, support.object_request(title="original", idempotency_key="row-1")
    )

    answer = objects_api.create_objects_batch_buckets(
        bucket.bucket_id,
        batch_request(
            {"title": "again", "idempotency_key": "row-1"},
            {"title": "fresh", "idempotency_key": "row-2"},
        ),
    )

    by_index = {o.object_index: o for o in answer.succeeded}
    assert by_index[0].object_id == first.object_id
    assert by_index[0].replayed is True
    assert by_index[0].replayed_by == "idempotency_key"
    assert by_index[1].replayed is False
    assert len(objects_api.list_objects_get_buckets(bucket.bucket_id).results) == 2


def test_batch_in_unknown_bucket_is_not_found(objects_api, namespace):
    with pytest.raises(NotFoundException) as caught:
        objects_api.create_objects_batch_buckets("bkt_doesnotexist", batch_request({"rank": 1}))

    support.error_of(caught.value, 404)


def test_bulk_soft_delete_hides_objects(objects_api, buckets_api, bucket):
    answer = objects_api.create_objects_batch_buckets(
        bucket.bucket_id, batch_request({"rank": 1}, {"rank": 2}, {"rank": 3})
    )
    ids = [o.object_id for o in sorted(answer.succeeded, key=lambda o: o.object_index)]

    deleted = objects_api.bulk_soft_delete_objects_buckets(
        bucket.bucket_id,
        mixpeek.BulkSoftDeleteRequest(object_ids=ids[:2], reason="scoping the bucket down"),
    )

    assert isinstance(deleted, mixpeek.BulkSoftDeleteResponse)
    assert deleted.requested == 2
    assert deleted.soft_deleted == 2
    assert deleted.collections >= 0
    remaining = objects_api.list_objects_get_buckets(bucket.bucket_id)
    assert [o.object_id for o in remaining.results] == ids[2:]
    assert buckets_api.get_bucket(bucket.bucket_id).object_count == 1


def test_bulk_soft_delete_needs_a_reason(http, namespace, bucket):
    response = http.request(
        "POST",
        f"/v1/buckets/{bucket.bucket_id}/objects/bulk-soft-delete",
        namespace=namespace.namespace_id,
        json={"object_ids": ["obj_x"]},
    )

    support.assert_envelope(response, 422)


def test_bulk_soft_delete_counts_only_this_buckets_objects(objects_api, buckets_api, bucket):
    mine = objects_api.create_object_buckets(bucket.bucket_id, support.object_request(rank=1))
    elsewhere = buckets_api.create_bucket(support.bucket_request(support.unique_name("bucket")))
    theirs = objects_api.create_object_buckets(elsewhere.bucket_id, support.object_request(rank=2))

    deleted = objects_api.bulk_soft_delete_objects_buckets(
        bucket.bucket_id,
        mixpeek.BulkSoftDeleteRequest(
            object_ids=[mine.object_id, theirs.object_id, "obj_doesnotexist"], reason="cleanup"
        ),
    )

    assert deleted.requested == 3
    assert deleted.soft_deleted == 1
    still_there = objects_api.get_object_buckets(elsewhere.bucket_id, theirs.object_id)
    assert still_there.object_id == theirs.object_id
