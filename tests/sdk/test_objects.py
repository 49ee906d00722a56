"""Single objects through the generated BucketObjectsApi and the Mixpeek wrapper: create with
every blob format, custom fields, idempotency keys, get, PUT, PATCH and DELETE."""

from __future__ import annotations

import base64
import datetime as dt

import mixpeek
import pytest
import requests
from mixpeek.exceptions import NotFoundException, UnprocessableEntityException

import support


def create(objects_api, bucket, **fields) -> mixpeek.ObjectResponse:
    created = objects_api.create_object_buckets(bucket.bucket_id, support.object_request(**fields))
    assert isinstance(created, mixpeek.ObjectResponse)
    return created


def custom(obj: mixpeek.ObjectResponse) -> dict:
    """The object's custom root fields and metadata, as the SDK kept them."""
    return obj.additional_properties


def test_create_with_text_blob_and_custom_fields(objects_api, bucket):
    text = "The quarterly report is due Friday."

    obj = create(
        objects_api,
        bucket,
        blobs=[support.text_blob(text)],
        title="report",
        rank=3,
        metadata={"source": "suite", "tags": ["a", "b"]},
    )

    assert obj.object_id.startswith("obj_")
    assert obj.bucket_id == bucket.bucket_id
    assert obj.status == mixpeek.TaskStatusEnum.PENDING
    assert isinstance(obj.created_at, dt.datetime)
    assert custom(obj)["title"] == "report"
    assert custom(obj)["rank"] == 3
    assert custom(obj)["metadata"] == {"source": "suite", "tags": ["a", "b"]}
    [blob] = obj.blobs
    assert blob.blob_id.startswith("blob_")
    assert blob.var_property == "content"
    assert blob.type == mixpeek.BucketSchemaFieldType.TEXT
    assert blob.details.size_bytes == len(text.encode())
    assert blob.details.mime_type.startswith("text/plain")


@pytest.mark.parametrize(
    ("blob", "size", "mime", "filename"),
    [
        (support.png_data_uri_blob(), len(support.PNG_BYTES), "image/png", None),
        (support.png_base64_blob("pixel.png"), len(support.PNG_BYTES), "image/png", "pixel.png"),
        (
            {"property": "content", "type": "text", "data": {"text": "wrapped"}},
            7,
            "text/plain",
            None,
        ),
        (
            {
                "property": "content",
                "type": "text",
                "data": "data:text/plain;base64," + base64.b64encode(b"encoded text").decode(),
            },
            12,
            "text/plain",
            None,
        ),
    ],
    ids=["data-uri", "base64-dict", "text-dict", "text-data-uri"],
)
def test_inline_blob_formats(objects_api, bucket, blob, size, mime, filename):
    obj = create(objects_api, bucket, blobs=[blob])

    [stored] = obj.blobs
    assert stored.var_property == blob["property"]
    assert stored.type == blob["type"]
    assert stored.details.size_bytes == size
    assert stored.details.mime_type.startswith(mime)
    if filename:
        assert stored.details.filename == filename
    assert stored.details.hash, "a stored inline blob has a content hash"


@pytest.mark.parametrize(
    "data",
    ["https://example.com/media/photo.png", {"url": "https://example.com/media/photo.png"}],
    ids=["url-string", "url-dict"],
)
def test_url_blob_kept_as_a_reference(objects_api, bucket, data):
    # canonicalize_source=false: the server records the reference and does not fetch it.
    blob = {"property": "image", "type": "image", "data": data, "canonicalize_source": False}

    obj = create(objects_api, bucket, blobs=[blob])

    [stored] = obj.blobs
    assert stored.var_property == "image"
    assert stored.type == mixpeek.BucketSchemaFieldType.IMAGE
    assert "https://example.com/media/photo.png" in support.dump(stored)


def test_custom_fields_round_trip_exactly(objects_api, bucket):
    fields = {
        "big": 2**53 + 1,
        "ratio": 0.1,
        "negative": -7,
        "flag": False,
        "nothing": None,
        "text": 'Grüße 🌍 "quoted" \\ back',
        "nested": {"deep": [1, {"x": None}, "two"], "empty": {}},
    }

    created = create(objects_api, bucket, key_prefix="imports/2026/", **fields)
    fetched = objects_api.get_object_buckets(bucket.bucket_id, created.object_id)

    assert created.key_prefix == fetched.key_prefix == "imports/2026/"
    for obj in (created, fetched):
        stored = {k: v for k, v in custom(obj).items() if k in fields}
        assert stored == fields
        assert type(stored["ratio"]) is float and type(stored["big"]) is int


def test_presigned_url_downloads_the_blob(objects_api, bucket, server):
    created = create(objects_api, bucket, blobs=[support.png_base64_blob("pixel.png")])

    fetched = objects_api.get_object_buckets(
        bucket.bucket_id, created.object_id, return_presigned_urls=True
    )

    [blob] = fetched.blobs
    assert blob.presigned_url, support.dump(blob)
    url = blob.presigned_url
    download = requests.get(url if "://" in url else server.base_url + url, timeout=30)
    assert download.status_code == 200
    assert download.content == support.PNG_BYTES
    assert blob.properties.get("presigned_url") == url
    plain = objects_api.get_object_buckets(bucket.bucket_id, created.object_id)
    assert plain.blobs[0].presigned_url is None


def test_two_blobs_on_one_object(objects_api, bucket):
    obj = create(
        objects_api, bucket, blobs=[support.text_blob("caption"), support.png_data_uri_blob()]
    )

    assert sorted(b.var_property for b in obj.blobs) == ["content", "image"]
    assert len({b.blob_id for b in obj.blobs}) == 2


def test_get_returns_the_stored_object(objects_api, bucket):
    created = create(
        objects_api, bucket, blobs=[support.png_base64_blob()], title="t", metadata={"k": "v"}
    )

    fetched = objects_api.get_object_buckets(bucket.bucket_id, created.object_id)

    assert fetched.object_id == created.object_id
    assert fetched.bucket_id == bucket.bucket_id
    assert custom(fetched)["title"] == "t"
    assert custom(fetched)["metadata"] == {"k": "v"}
    assert [b.blob_id for b in fetched.blobs] == [b.blob_id for b in created.blobs]
    assert fetched.blobs[0].details.to_dict() == created.blobs[0].details.to_dict()


def test_bucket_counts_follow_objects(objects_api, buckets_api, bucket):
    create(objects_api, bucket, blobs=[support.png_data_uri_blob()])
    create(objects_api, bucket, title="no blob")

    counted = buckets_api.get_bucket(bucket.bucket_id)

    assert counted.object_count == 2
    assert counted.total_size_bytes >= len(support.PNG_BYTES)


def test_unknown_object_and_wrong_bucket_are_not_found(objects_api, buckets_api, bucket):
    obj = create(objects_api, bucket, title="here")
    elsewhere = buckets_api.create_bucket(support.bucket_request(support.unique_name("bucket")))
    missing = "obj_doesnotexist"

    for call in (
        lambda: objects_api.get_object_buckets(bucket.bucket_id, missing),
        lambda: objects_api.update_object_buckets(
            bucket.bucket_id, missing, mixpeek.UpdateObjectRequest(key_prefix="x/")
        ),
        lambda: objects_api.patch_object_buckets(
            bucket.bucket_id, missing, mixpeek.PatchObjectRequest.from_dict({"title": "x"})
        ),
        lambda: objects_api.delete_object_buckets(bucket.bucket_id, missing),
        lambda: objects_api.get_object_buckets(elsewhere.bucket_id, obj.object_id),
        lambda: objects_api.create_object_buckets("bkt_doesnotexist", support.object_request()),
    ):
        with pytest.raises(NotFoundException) as caught:
            call()
        support.error_of(caught.value, 404)


@pytest.mark.parametrize(
    ("fields", "mentions"),
    [
        ({"blobs": [{"property": "nope", "type": "text", "data": "x"}]}, "nope"),
        ({"blobs": [{"property": "content", "type": "image", "data": "x"}]}, "content"),
        (
            {
                "blobs": [
                    {"property": "image", "type": "image", "data": {"base64": "***not base64***"}}
                ]
            },
            "base64",
        ),
        ({"blobs": [{"property": "image", "type": "image"}]}, "data"),
        ({"rank": "not a number"}, "rank"),
        ({"auto_process": True}, "auto_process"),
    ],
    ids=[
        "unknown-property",
        "type-mismatch",
        "bad-base64",
        "no-data",
        "field-type",
        "auto-process-in-body",
    ],  # fmt: skip
)
def test_invalid_object_is_unprocessable(objects_api, bucket, fields, mentions):
    with pytest.raises(UnprocessableEntityException) as caught:
        create(objects_api, bucket, **fields)

    envelope = support.error_of(caught.value, 422)
    assert mentions in support.dump(envelope)


def test_idempotency_key_replays_the_first_object(objects_api, bucket):
    first = create(objects_api, bucket, title="first", idempotency_key="import-42")
    replay = create(objects_api, bucket, title="second", idempotency_key="import-42")
    other = create(objects_api, bucket, title="other", idempotency_key="import-43")

    assert replay.object_id == first.object_id
    assert custom(replay)["title"] == "first"
    assert other.object_id != first.object_id
    listing = objects_api.list_objects_get_buckets(bucket.bucket_id)
    assert sorted(o.object_id for o in listing.results) == sorted(
        [first.object_id, other.object_id]
    )


def test_idempotency_keys_are_per_bucket(objects_api, buckets_api, bucket):
    elsewhere = buckets_api.create_bucket(support.bucket_request(support.unique_name("bucket")))

    here = create(objects_api, bucket, idempotency_key="shared-key")
    there = create(objects_api, elsewhere, idempotency_key="shared-key")

    assert here.object_id != there.object_id
    assert there.bucket_id == elsewhere.bucket_id


def test_put_routes_metadata_keys(objects_api, bucket):
    obj = create(objects_api, bucket, title="t", metadata={"owner": "ann", "stage": 1})

    updated = objects_api.update_object_buckets(
        bucket.bucket_id,
        obj.object_id,
        mixpeek.UpdateObjectRequest(
            metadata={"stage": 2, "reviewed": True}, key_prefix="reviewed/"
        ),
    )

    assert updated.object_id == obj.object_id
    assert updated.key_prefix == "reviewed/"
    assert custom(updated)["metadata"] == {"owner": "ann", "stage": 2}
    assert custom(updated)["reviewed"] is True
    assert custom(updated)["title"] == "t"
    assert [b.blob_id for b in updated.blobs or []] == [b.blob_id for b in obj.blobs or []]
    fetched = objects_api.get_object_buckets(bucket.bucket_id, obj.object_id)
    assert custom(fetched)["metadata"] == {"owner": "ann", "stage": 2}


def test_patch_changes_root_fields_only(objects_api, bucket):
    obj = create(
        objects_api,
        bucket,
        blobs=[support.text_blob("keep me")],
        title="old",
        rank=1,
        metadata={"m": 1},
    )

    patched = objects_api.patch_object_buckets(
        bucket.bucket_id,
        obj.object_id,
        mixpeek.PatchObjectRequest.from_dict({"title": "new", "campaign_id": "camp_002"}),
    )

    assert custom(patched)["title"] == "new"
    assert custom(patched)["campaign_id"] == "camp_002"
    assert patched.created_at == obj.created_at
    assert patched.updated_at > obj.updated_at
    assert custom(patched)["rank"] == 1
    assert custom(patched)["metadata"] == {"m": 1}
    assert [b.blob_id for b in patched.blobs] == [b.blob_id for b in obj.blobs]
    assert custom(objects_api.get_object_buckets(bucket.bucket_id, obj.object_id))["title"] == "new"


@pytest.mark.parametrize("reserved", ["status", "object_id", "blobs"])
def test_patch_refuses_reserved_names(objects_api, bucket, reserved):
    obj = create(objects_api, bucket, title="t")

    with pytest.raises(UnprocessableEntityException) as caught:
        objects_api.patch_object_buckets(
            bucket.bucket_id, obj.object_id, mixpeek.PatchObjectRequest.from_dict({reserved: "x"})
        )

    assert reserved in support.dump(support.error_of(caught.value, 422))


def test_delete_answers_204_then_404(objects_api, buckets_api, bucket):
    obj = create(objects_api, bucket, title="doomed", blobs=[support.png_data_uri_blob()])
    assert buckets_api.get_bucket(bucket.bucket_id).total_size_bytes == len(support.PNG_BYTES)

    answer = objects_api.delete_object_buckets_with_http_info(bucket.bucket_id, obj.object_id)

    assert answer.status_code == 204
    assert answer.data is None
    assert answer.raw_data in (b"", None)
    with pytest.raises(NotFoundException) as caught:
        objects_api.get_object_buckets(bucket.bucket_id, obj.object_id)
    support.error_of(caught.value, 404)
    with pytest.raises(NotFoundException):
        objects_api.delete_object_buckets(bucket.bucket_id, obj.object_id)
    emptied = buckets_api.get_bucket(bucket.bucket_id)
    assert (emptied.object_count, emptied.total_size_bytes) == (0, 0)


def test_other_organization_cannot_reach_objects(other_tenant, namespace, bucket, objects_api):
    obj = create(objects_api, bucket, title="private")
    other_tenant.client.configuration.api_key["NamespaceHeader"] = namespace.namespace_id
    theirs = mixpeek.BucketObjectsApi(other_tenant.client)

    with pytest.raises(NotFoundException) as caught:
        theirs.get_object_buckets(bucket.bucket_id, obj.object_id)
    support.error_of(caught.value, 404)
    with pytest.raises(NotFoundException):
        theirs.create_object_buckets(bucket.bucket_id, support.object_request(title="intruder"))
    with pytest.raises(NotFoundException):
        theirs.delete_object_buckets(bucket.bucket_id, obj.object_id)
    assert (
        objects_api.get_object_buckets(bucket.bucket_id, obj.object_id).object_id == obj.object_id
    )


def test_wrapper_upload_and_read_back(mp, bucket, objects_api):
    created = mp.buckets.upload(
        bucket.bucket_id,
        data="a note from the wrapper",
        blob_property="content",
        blob_type="text",
        metadata={"via": "wrapper"},
        title="wrapped",
    )

    assert created.object_id.startswith("obj_")
    assert created["metadata"] == {"via": "wrapper"}
    assert created["title"] == "wrapped"
    assert created.blobs[0]["property"] == "content"
    fetched = objects_api.get_object_buckets(bucket.bucket_id, created.object_id)
    assert fetched.additional_properties["metadata"] == {"via": "wrapper"}


def test_wrapper_upload_picks_the_property_from_the_schema(mp, buckets_api, namespace):
    # A bucket with one file property lets the wrapper read the schema and choose it.
    single = buckets_api.create_bucket(
        mixpeek.BucketCreateRequest.from_dict(
            {
                "bucket_name": support.unique_name("single"),
                "bucket_schema": {"properties": {"photo": {"type": "image"}}},
            }
        )
    )

    created = mp.buckets.upload(
        single.bucket_id, data=f"data:image/png;base64,{support.PNG_BASE64}"
    )

    assert created.blobs[0]["property"] == "photo"
    assert created.blobs[0]["type"] == "image"


def test_wrapper_index_uploads_into_the_namespaces_bucket(mp, buckets_api, objects_api):
    # index() lists the namespace's buckets (POST …/buckets/list, no body), reads the first
    # one's schema and creates the object there.
    only = buckets_api.create_bucket(
        mixpeek.BucketCreateRequest.from_dict(
            {
                "bucket_name": support.unique_name("indexed"),
                "bucket_schema": {"properties": {"photo": {"type": "image"}}},
            }
        )
    )

    created = mp.index("https://example.com/media/cat.png", metadata={"via": "index"})

    assert created["bucket_id"] == only.bucket_id
    assert created["metadata"] == {"via": "index"}
    assert created["blobs"][0]["property"] == "photo"
    fetched = objects_api.get_object_buckets(only.bucket_id, created["object_id"])
    assert fetched.blobs[0].type == mixpeek.BucketSchemaFieldType.IMAGE


def test_skip_duplicates_returns_the_object_that_holds_the_blob(objects_api, bucket):
    first = create(objects_api, bucket, blobs=[support.text_blob("same bytes")])

    plain = create(objects_api, bucket, blobs=[support.text_blob("same bytes")])
    skipped = create(
        objects_api, bucket, blobs=[support.text_blob("same bytes")], skip_duplicates=True
    )
    batch = objects_api.create_objects_batch_buckets(
        bucket.bucket_id,
        mixpeek.CreateObjectsBatchRequest.from_dict(
            {"objects": [{"blobs": [support.text_blob("same bytes")], "skip_duplicates": True}]}
        ),
    )

    assert plain.object_id != first.object_id
    assert skipped.object_id in (first.object_id, plain.object_id)
    [replay] = batch.succeeded
    assert replay.object_id in (first.object_id, plain.object_id)
    assert replay.replayed is True
    assert replay.replayed_by == "skip_duplicates"


@pytest.mark.parametrize(
    ("checksum", "stored"),
    [("sha256:" + "ab" * 32, "sha256:" + "ab" * 32), ("CD" * 32, "sha256:" + "cd" * 32)],
    ids=["prefixed", "bare-hex"],
)
def test_checksum_is_kept_as_the_blob_hash(objects_api, bucket, checksum, stored):
    blob = {
        "property": "image",
        "type": "image",
        "data": "https://example.com/media/photo.png",
        "checksum": checksum,
    }

    obj = create(objects_api, bucket, blobs=[blob])

    assert obj.blobs[0].details.hash == stored


@pytest.mark.parametrize("checksum", ["md5:" + "ab" * 16, "sha256:xyz", "nonsense"])
def test_malformed_checksum_is_unprocessable(objects_api, bucket, checksum):
    blob = {"property": "image", "type": "image", "data": "https://example.com/a.png"}

    with pytest.raises(UnprocessableEntityException) as caught:
        create(objects_api, bucket, blobs=[{**blob, "checksum": checksum}])

    assert "checksum" in support.dump(support.error_of(caught.value, 422))
