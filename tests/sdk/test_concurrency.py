"""Concurrent writes that must not duplicate: idempotency keys, unique keys and names.

Each round fires the same request from several threads at once, each thread with its own SDK
client (the generated ApiClient is not meant to be shared across threads). A race that is lost
only now and then still shows within a few rounds."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import mixpeek
import pytest
from mixpeek.exceptions import ApiException, ConflictException

import support

WRITERS = 8
ROUNDS = 5


def race(server, namespace, call: Callable[[mixpeek.ApiClient], object]) -> list[object]:
    """Runs `call` once per writer, all at the same time; returns results or exceptions."""

    def one(_: int) -> object:
        config = mixpeek.Configuration(host=server.base_url, access_token=server.api_key)
        config.api_key["NamespaceHeader"] = namespace.namespace_id
        with mixpeek.ApiClient(config) as client:
            try:
                return call(client)
            except ApiException as exc:
                return exc

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        return list(pool.map(one, range(WRITERS)))


def bodies(results: list[object]) -> list[object]:
    """The raw bodies of the errors among the results, for assertion messages."""
    return [getattr(r, "body", r) for r in results if isinstance(r, Exception)]


def test_same_idempotency_key_creates_one_object(server, namespace, bucket, objects_api):
    for round_ in range(ROUNDS):
        key = f"race-{round_}"
        results = race(
            server,
            namespace,
            lambda client, key=key: mixpeek.BucketObjectsApi(client).create_object_buckets(
                bucket.bucket_id, support.object_request(idempotency_key=key)
            ),
        )

        assert bodies(results) == [], f"round {round_}"
        assert len({r.object_id for r in results}) == 1, f"round {round_}"

    assert len(objects_api.list_objects_get_buckets(bucket.bucket_id).results) == ROUNDS


@pytest.mark.parametrize("policy", ["insert", "upsert"])
def test_same_unique_key_creates_one_object(server, namespace, buckets_api, objects_api, policy):
    keyed = buckets_api.create_bucket(
        support.bucket_request(support.unique_name("keyed"), unique_key={"fields": ["sku"]})
    )

    for round_ in range(ROUNDS):
        sku = f"RACE-{round_}"
        results = race(
            server,
            namespace,
            lambda client, sku=sku: mixpeek.BucketObjectsApi(client).create_object_buckets(
                keyed.bucket_id, support.object_request(sku=sku), policy=policy
            ),
        )

        created = [r for r in results if isinstance(r, mixpeek.ObjectResponse)]
        refused = [r for r in results if not isinstance(r, mixpeek.ObjectResponse)]
        if policy == "insert":
            assert len(created) == 1, f"round {round_}: {bodies(results)}"
            assert all(isinstance(r, ConflictException) for r in refused), bodies(results)
        else:
            # An upsert never conflicts: it creates the object or updates it.
            assert refused == [], f"round {round_}: {bodies(results)}"
            assert len({r.object_id for r in created}) == 1, f"round {round_}"

    assert len(objects_api.list_objects_get_buckets(keyed.bucket_id).results) == ROUNDS


def test_same_bucket_name_creates_one_bucket(server, namespace, buckets_api):
    name = support.unique_name("contested")

    results = race(
        server,
        namespace,
        lambda client: mixpeek.BucketsApi(client).create_bucket(support.bucket_request(name)),
    )

    created = [r for r in results if isinstance(r, mixpeek.BucketResponse)]
    refused = [r for r in results if not isinstance(r, mixpeek.BucketResponse)]
    assert len(created) == 1
    assert all(isinstance(r, ConflictException) for r in refused), bodies(results)
    assert [b.bucket_name for b in buckets_api.list_buckets().results] == [name]


def test_parallel_creates_are_all_counted(server, namespace, bucket, buckets_api):
    results = race(
        server,
        namespace,
        lambda client: mixpeek.BucketObjectsApi(client).create_object_buckets(
            bucket.bucket_id, support.object_request(blobs=[support.png_data_uri_blob()])
        ),
    )

    assert bodies(results) == []
    counted = buckets_api.get_bucket(bucket.bucket_id)
    assert counted.object_count == WRITERS
    assert counted.total_size_bytes == WRITERS * len(support.PNG_BYTES)
