"""Presigned uploads through the generated BucketUploadsApi: create, PUT the bytes with
`requests`, confirm, get, list, delete; batches and the duplicate check."""

from __future__ import annotations

import hashlib

import mixpeek
import pytest
import requests
from mixpeek.exceptions import BadRequestException, ConflictException, NotFoundException

import support


@pytest.fixture
def uploads_api(api_client: mixpeek.ApiClient) -> mixpeek.BucketUploadsApi:
    return mixpeek.BucketUploadsApi(api_client)


def new_upload(uploads_api, bucket, **fields) -> mixpeek.UploadResponse:
    body = {"filename": "pixel.png", "content_type": "image/png", "blob_property": "image", **fields}
    created = uploads_api.create_upload_buckets(
        bucket.bucket_id, mixpeek.CreateUploadRequest.from_dict(body)
    )
    assert isinstance(created, mixpeek.UploadResponse)
    return created


def put_bytes(upload: mixpeek.UploadResponse, data: bytes) -> requests.Response:
    return requests.put(
        upload.presigned_url, data=data, headers={"Content-Type": upload.content_type}, timeout=30
    )


def test_full_upload_flow(uploads_api, objects_api, bucket, namespace):
    upload = new_upload(
        uploads_api,
        bucket,
        file_size_bytes=len(support.PNG_BYTES),
        object_metadata={"title": "uploaded"},
    )
    assert upload.upload_id.startswith("upl_")
    assert upload.status == mixpeek.TaskStatusEnum.PENDING
    assert upload.create_object_on_confirm is True
    assert upload.presigned_url_expiration == 3600
    assert upload.expires_at > upload.created_at

    stored = put_bytes(upload, support.PNG_BYTES)
    assert stored.status_code == 200, stored.text
    etag = stored.headers["ETag"]

    confirmed = uploads_api.confirm_upload_buckets(
        bucket.bucket_id,
        upload.upload_id,
        confirm_upload_request=mixpeek.ConfirmUploadRequest(
            etag=etag, file_size_bytes=len(support.PNG_BYTES)
        ),
    )
    assert isinstance(confirmed, mixpeek.ConfirmUploadResponse)
    assert confirmed.status == mixpeek.TaskStatusEnum.COMPLETED
    assert confirmed.object_id.startswith("obj_")

    again = uploads_api.confirm_upload_buckets(
        bucket.bucket_id, upload.upload_id, confirm_upload_request=mixpeek.ConfirmUploadRequest()
    )
    assert again.object_id == confirmed.object_id

    obj = objects_api.get_object_buckets(
        bucket.bucket_id, confirmed.object_id, return_presigned_urls=True
    )
    assert obj.additional_properties["title"] == "uploaded"
    [blob] = obj.blobs
    assert blob.var_property == "image"
    assert blob.details.size_bytes == len(support.PNG_BYTES)
    downloaded = requests.get(blob.presigned_url, timeout=30)
    assert downloaded.status_code == 200
    assert downloaded.content == support.PNG_BYTES

    fetched = uploads_api.get_upload_buckets(bucket.bucket_id, upload.upload_id)
    assert fetched["status"] == "COMPLETED"
    assert fetched["object_id"] == confirmed.object_id

    listing = uploads_api.list_uploads_buckets(
        bucket.bucket_id, list_uploads_request=mixpeek.ListUploadsRequest()
    )
    assert isinstance(listing, mixpeek.ListUploadsResponse)
    assert [u.upload_id for u in listing.results] == [upload.upload_id]
    assert listing.stats.total_uploads == 1
    assert listing.stats.uploads_by_status == {"COMPLETED": 1}

    with pytest.raises(ConflictException) as refused:
        uploads_api.delete_upload_buckets(bucket.bucket_id, upload.upload_id)
    assert support.error_of(refused.value, 409).error.code == "upload_completed"


def test_pending_upload_is_deleted_and_unknown_is_404(uploads_api, bucket):
    upload = new_upload(uploads_api, bucket)
    assert uploads_api.delete_upload_buckets(bucket.bucket_id, upload.upload_id) is None
    assert uploads_api.get_upload_buckets(bucket.bucket_id, upload.upload_id)["status"] == "CANCELED"
    with pytest.raises(NotFoundException):
        uploads_api.get_upload_buckets(bucket.bucket_id, "upl_missing0000000")


def test_confirm_checks_the_bytes(uploads_api, bucket):
    upload = new_upload(uploads_api, bucket)
    with pytest.raises(BadRequestException) as missing:
        uploads_api.confirm_upload_buckets(
            bucket.bucket_id, upload.upload_id, confirm_upload_request=mixpeek.ConfirmUploadRequest()
        )
    assert support.error_of(missing.value, 400).error.code == "upload_missing"

    assert put_bytes(upload, support.PNG_BYTES).status_code == 200
    with pytest.raises(BadRequestException) as wrong_size:
        uploads_api.confirm_upload_buckets(
            bucket.bucket_id,
            upload.upload_id,
            confirm_upload_request=mixpeek.ConfirmUploadRequest(
                file_size_bytes=len(support.PNG_BYTES) + 1
            ),
        )
    assert support.error_of(wrong_size.value, 400).error.code == "size_mismatch"


def test_batch_create_and_batch_confirm(uploads_api, objects_api, tasks_api, bucket):
    request = mixpeek.BatchUploadRequest.from_dict(
        {
            "uploads": [
                {"filename": f"{i}.png", "content_type": "image/png", "blob_property": "image"}
                for i in range(3)
            ],
            "shared_object_metadata": {"title": "from-batch"},
        }
    )
    batch = uploads_api.create_uploads_batch_buckets(bucket.bucket_id, request)
    assert isinstance(batch, mixpeek.BatchUploadResponse)
    assert batch.total == 3
    for upload in batch.uploads:
        assert put_bytes(upload, support.PNG_BYTES).status_code == 200

    confirmations = [{"upload_id": u.upload_id} for u in batch.uploads]
    started = uploads_api.confirm_uploads_batch_buckets(
        bucket.bucket_id, mixpeek.BatchConfirmRequest(confirmations=confirmations)
    )
    assert isinstance(started, mixpeek.BatchConfirmResponse)
    assert started.confirmations_count == 3
    assert started.task.task_type == mixpeek.TaskType.API_BUCKETS_UPLOADS_BATCH_CONFIRM
    finished = support.wait_for_task(tasks_api, started.task_id)
    assert finished.status == mixpeek.TaskStatusEnum.COMPLETED

    request = mixpeek.ListObjectsRequest.from_dict({"filters": {"title": "from-batch"}})
    objects = objects_api.list_objects_buckets(bucket.bucket_id, list_objects_request=request)
    assert len(objects.results) == 3


def test_duplicate_hash_returns_the_first_upload(uploads_api, bucket):
    digest = hashlib.sha256(support.PNG_BYTES).hexdigest()
    first = new_upload(uploads_api, bucket, file_hash=digest)
    second = new_upload(uploads_api, bucket, file_hash=digest)
    assert second.is_duplicate is True
    assert second.duplicate_of_upload_id == first.upload_id
    assert second.presigned_url is None
