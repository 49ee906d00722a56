"""Batches through the official SDK: the lifecycle to every terminal status, what processing
writes into collections (asserted field by field), cancel, retry, and the read side of
collections, documents and feature extractors."""

from __future__ import annotations

import base64
import struct
import time
import zlib
from typing import Any

import mixpeek
import pytest
from mixpeek.exceptions import ConflictException, UnprocessableEntityException

import harness
import support

TERMINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELED"}
SCHEMA = {"properties": {"content": {"type": "text"}, "photo": {"type": "image"},
                         "title": {"type": "string"}}}  # fmt: skip


def png(width: int, height: int) -> bytes:
    """A real RGB PNG of the given size: a gradient, so that it has content to hash."""
    def pixel(x: int, y: int) -> bytes:
        return bytes((x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), 128))

    rows = b"".join(
        b"\x00" + b"".join(pixel(x, y) for x in range(width)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))  # fmt: skip


def image_blob(data: bytes, mime: str = "image/png", name: str = "photo.png") -> dict[str, Any]:
    return {
        "property": "photo",
        "type": "image",
        "data": {"base64": base64.b64encode(data).decode(), "mime_type": mime, "filename": name},
    }


@pytest.fixture
def batches_api(api_client: mixpeek.ApiClient) -> mixpeek.BucketBatchesApi:
    return mixpeek.BucketBatchesApi(api_client)


def processing_namespace(api_client: mixpeek.ApiClient) -> mixpeek.NamespaceModel:
    """A namespace with a text and an image extractor; X-Namespace points at it from now on."""
    request = mixpeek.CreateNamespaceRequest.from_dict({
        "namespace_name": support.unique_name("proc"),
        "feature_extractors": [
            {"feature_extractor_name": "text_extractor", "version": "v1",
             "params": {"chunk_size": 40, "chunk_overlap": 0}},
            {"feature_extractor_name": "image_extractor", "version": "v1"},
        ],
    })  # fmt: skip
    created = mixpeek.NamespacesApi(api_client).create_namespace(request)
    api_client.configuration.api_key["NamespaceHeader"] = created.namespace_id
    return created


def new_bucket(api_client: mixpeek.ApiClient) -> str:
    request = mixpeek.BucketCreateRequest.from_dict(
        {"bucket_name": support.unique_name("proc"), "bucket_schema": SCHEMA}
    )
    return mixpeek.BucketsApi(api_client).create_bucket(request).bucket_id


def create(api_client, bucket_id: str, **fields: Any) -> str:
    created = mixpeek.BucketObjectsApi(api_client).create_object_buckets(
        bucket_id, support.object_request(**fields)
    )
    return created.object_id


def run_batch(batches_api, bucket_id: str, object_ids: list[str], **submit: Any):
    batch = batches_api.create_batch_buckets_batches(
        bucket_id, mixpeek.CreateBatchRequest(object_ids=object_ids)
    )
    assert batch.status == mixpeek.TaskStatusEnum.DRAFT
    task = batches_api.submit_batch_buckets_batches(
        bucket_id, batch.batch_id, submit_batch_request=mixpeek.SubmitBatchRequest(**submit)
    )
    assert isinstance(task, mixpeek.TaskResponse)
    return wait(batches_api, bucket_id, batch.batch_id)


def wait(batches_api, bucket_id: str, batch_id: str, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        batch = batches_api.get_batch_buckets_batches(bucket_id, batch_id)
        assert isinstance(batch, mixpeek.BatchModel)
        if batch.status.value in TERMINAL:
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.status}"
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def collection_id(api_client, name: str) -> str:
    collections = mixpeek.CollectionsApi(api_client).list_collections()
    by_name = {c.collection_name: c for c in collections.results}
    assert name in by_name, list(by_name)
    return by_name[name].collection_id


def documents(api_client, collection: str) -> list[dict[str, Any]]:
    api = mixpeek.CollectionDocumentsApi(api_client)
    page = api.list_documents(collection, list_documents_request=mixpeek.ListDocumentsRequest())
    assert isinstance(page, mixpeek.ListDocumentsResponse)
    return [d.to_dict() for d in page.results]


def test_good_objects_complete_and_write_real_documents(api_client, batches_api):
    processing_namespace(api_client)
    bucket = new_bucket(api_client)
    text = "The river flows under the old bridge, and the town sleeps in the light of the evening."
    note = create(api_client, bucket, title="note", blobs=[support.text_blob(text)])
    photo = create(api_client, bucket, title="photo", blobs=[image_blob(png(300, 200))])

    done = run_batch(batches_api, bucket, [note, photo])
    assert done.status == mixpeek.TaskStatusEnum.COMPLETED, done.status_message
    assert done.lifecycle == "indexed"
    assert done.progress.processed == 2 and done.progress.total == 2
    assert done.failed_object_count == 0

    chunks = sorted(documents(api_client, collection_id(api_client, "text_extractor_v1")),
                    key=lambda d: d["chunk_index"])  # fmt: skip
    assert [c["text"] for c in chunks] == [text[0:40], text[40:80], text[80:]]
    assert [c["language"] for c in chunks] == ["en"] * 3, chunks
    assert all(c["source_object_id"] == note for c in chunks)
    assert done.documents_written == len(chunks) + 1

    [image] = documents(api_client, collection_id(api_client, "image_extractor_v1"))
    assert (image["width"], image["height"]) == (300, 200)
    assert image["format"] == "png"
    assert image["source_object_id"] == photo
    assert len(image["perceptual_hash"]) == 16

    obj = mixpeek.BucketObjectsApi(api_client).get_object_buckets(bucket, photo)
    assert obj.to_dict().get("document_count") == 1


def test_one_corrupt_image_completes_with_errors_naming_it(api_client, batches_api):
    processing_namespace(api_client)
    bucket = new_bucket(api_client)
    good = create(api_client, bucket, title="good", blobs=[image_blob(png(16, 16))])
    bad = create(
        api_client, bucket, title="bad", blobs=[image_blob(b"this is not an image at all")]
    )
    done = run_batch(batches_api, bucket, [good, bad])
    assert done.status == mixpeek.TaskStatusEnum.COMPLETED_WITH_ERRORS
    assert done.failed_object_count == 1
    [failure] = done.failed_objects
    assert failure.object_id == bad
    assert failure.error_type == "permanent"
    assert "image" in failure.error
    assert done.error_summary == {"permanent": 1}
    assert done.documents_written == 1


def test_only_bad_objects_fail_the_batch(api_client, batches_api, tasks_api):
    processing_namespace(api_client)
    bucket = new_bucket(api_client)
    bad = [
        create(api_client, bucket, title=f"bad {i}", blobs=[image_blob(b"\x00\x01 garbage")])
        for i in range(3)
    ]
    done = run_batch(batches_api, bucket, bad)
    assert done.status == mixpeek.TaskStatusEnum.FAILED
    assert done.lifecycle == "failed"
    assert done.failure_reason and "all 3 objects failed" in done.failure_reason
    task = support.wait_for_task(tasks_api, done.task_id)
    assert task.status == mixpeek.TaskStatusEnum.FAILED


def test_retry_reprocesses_only_the_failed(api_client, batches_api):
    processing_namespace(api_client)
    bucket = new_bucket(api_client)
    good = create(api_client, bucket, title="good", blobs=[image_blob(png(8, 8))])
    bad = create(api_client, bucket, title="bad", blobs=[image_blob(b"broken bytes")])
    first = run_batch(batches_api, bucket, [good, bad])
    assert first.status == mixpeek.TaskStatusEnum.COMPLETED_WITH_ERRORS
    images = collection_id(api_client, "image_extractor_v1")
    [before] = documents(api_client, images)

    # A retry processes the failed object again (it fails again, being still broken) and
    # leaves the good object's documents as they were.
    answer = batches_api.retry_batch_buckets_batches(
        bucket, first.batch_id, mixpeek.RetryBatchRequest()
    )
    assert answer["retried_objects"] == 1
    second = wait(batches_api, bucket, first.batch_id)
    assert second.status == mixpeek.TaskStatusEnum.COMPLETED_WITH_ERRORS
    assert second.retry_count == 1
    [failure] = second.failed_objects
    assert failure.object_id == bad
    assert failure.timestamp > first.failed_objects[0].timestamp
    [after] = documents(api_client, images)
    assert after["source_object_id"] == good
    assert after["_internal"]["processed_at"] == before["_internal"]["processed_at"]


def test_cancel_mid_run_stops_the_work(tmp_path_factory, backend):
    """On a server that processes one object at a time, a cancel lands while work remains."""
    workdir = tmp_path_factory.mktemp("cancel")
    slow = {"SLUICE_WORKERS": "1", "SLUICE_BATCH_CONCURRENCY": "1", "SLUICE_BATCH_SLICE_SIZE": "5"}
    with (
        harness.fresh_store(backend) as database_url,
        harness.running_server(backend, workdir, database_url, extra_env=slow) as srv,
        mixpeek.ApiClient(mixpeek.Configuration(host=srv.base_url, access_token=srv.api_key)) as api,
    ):
        processing_namespace(api)
        bucket = new_bucket(api)
        text = "A sentence about nothing in particular, repeated to make some work. " * 20
        objects_api = mixpeek.BucketObjectsApi(api)
        ids: list[str] = []
        for start in range(0, 400, 100):
            body = {"objects": [{"title": f"t{i}", "blobs": [support.text_blob(text)]}
                                for i in range(start, start + 100)]}  # fmt: skip
            made = objects_api.create_objects_batch_buckets(
                bucket, mixpeek.CreateObjectsBatchRequest.from_dict(body)
            )
            ids += [o.object_id for o in made.succeeded]
        batches = mixpeek.BucketBatchesApi(api)
        batch = batches.create_batch_buckets_batches(
            bucket, mixpeek.CreateBatchRequest(object_ids=ids)
        )
        batches.submit_batch_buckets_batches(
            bucket, batch.batch_id, submit_batch_request=mixpeek.SubmitBatchRequest()
        )
        deadline = time.monotonic() + 60
        while batches.get_batch_buckets_batches(bucket, batch.batch_id).progress.processed < 5:
            assert time.monotonic() < deadline, "processing did not start"
            time.sleep(0.02)
        task = batches.cancel_batch_buckets_batches(bucket, batch.batch_id, reason="enough")
        assert task.status == mixpeek.TaskStatusEnum.CANCELED
        assert task.cancellation is not None

        canceled = batches.get_batch_buckets_batches(bucket, batch.batch_id)
        assert canceled.status == mixpeek.TaskStatusEnum.CANCELED
        assert canceled.lifecycle_reason == "enough"
        stopped_at = canceled.progress.processed
        assert 0 < stopped_at < len(ids)
        time.sleep(1.0)
        later = batches.get_batch_buckets_batches(bucket, batch.batch_id)
        # At most the group in flight when the cancel came may still land.
        assert later.progress.processed <= stopped_at + 64
        assert later.status == mixpeek.TaskStatusEnum.CANCELED
        with pytest.raises(ConflictException):
            batches.submit_batch_buckets_batches(
                bucket, batch.batch_id, submit_batch_request=mixpeek.SubmitBatchRequest()
            )


def test_unknown_extractor_is_refused_and_built_ins_are_listed(api_client):
    request = mixpeek.CreateNamespaceRequest.from_dict({
        "namespace_name": support.unique_name("nope"),
        "feature_extractors": [{"feature_extractor_name": "mind_reader", "version": "v1"}],
    })  # fmt: skip
    with pytest.raises(UnprocessableEntityException) as caught:
        mixpeek.NamespacesApi(api_client).create_namespace(request)
    assert support.error_of(caught.value, 422).error.code == "feature_extractor_not_found"

    extractors = mixpeek.FeatureExtractorsApi(api_client).list_feature_extractors()
    names = {e.feature_extractor_name for e in extractors}
    assert {"text_extractor", "image_extractor", "multimodal_extractor",
            "passthrough_extractor"} <= names  # fmt: skip


def test_org_wide_batch_routes(api_client, batches_api):
    processing_namespace(api_client)
    bucket = new_bucket(api_client)
    note = create(api_client, bucket, title="n", blobs=[support.text_blob("short text here")])
    done = run_batch(batches_api, bucket, [note])
    org = mixpeek.BatchesApi(api_client)
    same = org.get_batch_by_id_batches(done.batch_id)
    assert same.batch_id == done.batch_id and same.status == done.status
    listed = org.list_all_batches(mixpeek.ListBatchesRequest())
    assert done.batch_id in {b.batch_id for b in listed.results}
