"""Listing objects: POST list with filters, sort, select and cursors; the GET alias; and the
Mixpeek wrapper's list_objects."""

from __future__ import annotations

import mixpeek
import pytest
from mixpeek.exceptions import BadRequestException, UnprocessableEntityException

import support

PAGE = 10
COUNT = 25


@pytest.fixture
def many(objects_api, bucket) -> list[str]:
    """COUNT objects created in one batch, in rank order 0..COUNT-1; returns their ids."""
    answer = objects_api.create_objects_batch_buckets(
        bucket.bucket_id,
        mixpeek.CreateObjectsBatchRequest.from_dict(
            {
                "objects": [
                    {
                        "title": f"item {i:02d}",
                        "rank": i,
                        "category": "even" if i % 2 == 0 else "odd",
                    }
                    for i in range(COUNT)
                ]
            }
        ),
    )
    assert answer.succeeded_count == COUNT, support.dump(answer)
    return [o.object_id for o in sorted(answer.succeeded, key=lambda o: o.object_index)]


def list_request(**body) -> mixpeek.ListObjectsRequest:
    request = mixpeek.ListObjectsRequest.from_dict(body)
    assert request is not None
    return request


def test_default_order_is_creation_order(objects_api, bucket):
    ids = [
        objects_api.create_object_buckets(
            bucket.bucket_id, support.object_request(rank=i)
        ).object_id
        for i in range(3)
    ]

    listing = objects_api.list_objects_buckets(bucket.bucket_id)

    assert isinstance(listing, mixpeek.ListObjectsResponse)
    assert [o.object_id for o in listing.results] == ids
    assert all(o.bucket_id == bucket.bucket_id for o in listing.results)


def test_post_list_pages_through_every_object_once(objects_api, bucket, many):
    seen: list[str] = []
    page_sizes: list[int] = []
    cursor = None

    for _ in range(COUNT):  # bounded: a server that never ends the listing fails here
        page = objects_api.list_objects_buckets(
            bucket.bucket_id, limit=PAGE, cursor=cursor, list_objects_request=list_request()
        )
        seen += [o.object_id for o in page.results]
        page_sizes.append(len(page.results))
        cursor = page.pagination.next_cursor
        if not cursor:
            break

    assert page_sizes == [10, 10, 5]
    assert seen == many


def test_get_list_pages_through_every_object_once(objects_api, bucket, many):
    seen: list[str] = []
    cursor = None

    for _ in range(COUNT):
        page = objects_api.list_objects_get_buckets(bucket.bucket_id, limit=PAGE, cursor=cursor)
        seen += [o.object_id for o in page.results]
        cursor = page.pagination.next_cursor
        if not cursor:
            break

    assert len(seen) == len(set(seen)) == COUNT
    assert set(seen) == set(many)


def test_cursor_aliases_continue_the_same_listing(objects_api, bucket, many):
    first = objects_api.list_objects_get_buckets(bucket.bucket_id, page_size=PAGE)
    cursor = first.pagination.next_cursor
    assert cursor

    via_next_cursor = objects_api.list_objects_get_buckets(
        bucket.bucket_id, page_size=PAGE, next_cursor=cursor
    )
    via_after = objects_api.list_objects_get_buckets(bucket.bucket_id, page_size=PAGE, after=cursor)

    expected = many[PAGE : 2 * PAGE]
    assert [o.object_id for o in via_next_cursor.results] == expected
    assert [o.object_id for o in via_after.results] == expected


def test_sorted_descending_pages_stay_sorted(objects_api, bucket, many):
    ranks: list[int] = []
    cursor = None

    for _ in range(COUNT):
        page = objects_api.list_objects_buckets(
            bucket.bucket_id,
            limit=PAGE,
            cursor=cursor,
            list_objects_request=list_request(sort={"field": "rank", "direction": "desc"}),
        )
        ranks += [o.additional_properties["rank"] for o in page.results]
        cursor = page.pagination.next_cursor
        if not cursor:
            break

    assert ranks == list(range(COUNT - 1, -1, -1))


def test_include_total_and_offset(objects_api, bucket, many):
    counted = objects_api.list_objects_buckets(bucket.bucket_id, limit=PAGE, include_total=True)
    offset = objects_api.list_objects_buckets(bucket.bucket_id, limit=PAGE, offset=20)
    paged = objects_api.list_objects_get_buckets(bucket.bucket_id, limit=PAGE, page=2)

    assert counted.pagination.total == COUNT
    assert [o.object_id for o in offset.results] == many[20:]
    assert [o.object_id for o in paged.results] == many[10:20]


def test_filter_with_conditions(objects_api, bucket, many):
    listing = objects_api.list_objects_buckets(
        bucket.bucket_id,
        list_objects_request=list_request(
            filters={
                "AND": [
                    {"field": "category", "operator": "eq", "value": "even"},
                    {"field": "rank", "operator": "gte", "value": 20},
                ]
            }
        ),
    )

    assert sorted(o.additional_properties["rank"] for o in listing.results) == [20, 22, 24]


def test_filter_or_and_in(objects_api, bucket, many):
    listing = objects_api.list_objects_buckets(
        bucket.bucket_id,
        list_objects_request=list_request(
            filters={
                "OR": [
                    {"field": "rank", "operator": "in", "value": [1, 2]},
                    {"field": "title", "operator": "eq", "value": "item 24"},
                ]
            }
        ),
    )

    assert sorted(o.additional_properties["rank"] for o in listing.results) == [1, 2, 24]


def test_filter_shorthand_on_metadata(objects_api, bucket):
    wanted = objects_api.create_object_buckets(
        bucket.bucket_id, support.object_request(metadata={"source": "crawler"})
    )
    objects_api.create_object_buckets(
        bucket.bucket_id, support.object_request(metadata={"source": "upload"})
    )

    listing = objects_api.list_objects_buckets(
        bucket.bucket_id, list_objects_request=list_request(filters={"metadata.source": "crawler"})
    )

    assert [o.object_id for o in listing.results] == [wanted.object_id]


def test_select_returns_only_the_chosen_fields(objects_api, bucket, many):
    listing = objects_api.list_objects_buckets(
        bucket.bucket_id, limit=3, list_objects_request=list_request(select=["title"])
    )

    assert len(listing.results) == 3
    for obj in listing.results:
        assert obj.object_id and obj.bucket_id == bucket.bucket_id
        assert "title" in obj.additional_properties
        assert "rank" not in obj.additional_properties
        assert "category" not in obj.additional_properties


def test_stats_describe_the_page(objects_api, bucket):
    objects_api.create_object_buckets(
        bucket.bucket_id, support.object_request(blobs=[support.text_blob("a")])
    )
    objects_api.create_object_buckets(bucket.bucket_id, support.object_request(title="no blobs"))

    listing = objects_api.list_objects_buckets(bucket.bucket_id)

    assert listing.stats is not None
    assert listing.stats.total_objects == 2
    assert listing.stats.total_blobs == 1


def test_unknown_body_key_is_unprocessable(objects_api, bucket):
    with pytest.raises(UnprocessableEntityException) as caught:
        objects_api.list_objects_buckets(
            bucket.bucket_id, list_objects_request=list_request(bogus=1)
        )

    assert "bogus" in support.dump(support.error_of(caught.value, 422))


def test_limit_out_of_range_is_refused(http, namespace, bucket):
    # The SDK checks 1..1000 itself, so the bad value goes out as plain HTTP.
    response = http.request(
        "GET", f"/v1/buckets/{bucket.bucket_id}/objects?limit=0", namespace=namespace.namespace_id
    )

    assert response.status_code in (400, 422), response.text
    support.assert_envelope(response, response.status_code)


def test_garbage_cursor_is_a_client_error(objects_api, bucket, many):
    with pytest.raises((BadRequestException, UnprocessableEntityException)) as caught:
        objects_api.list_objects_get_buckets(bucket.bucket_id, cursor="not-a-cursor")

    support.error_of(caught.value, caught.value.status)


def test_wrapper_list_objects(mp, bucket, many):
    """The wrapper sends page_size and cursor in the JSON body, not in the query string."""
    seen: list[str] = []
    cursor = None

    for _ in range(COUNT):
        page = mp.buckets.list_objects(bucket.bucket_id, cursor=cursor, page_size=PAGE)
        seen += [o["object_id"] for o in page["results"]]
        cursor = page["pagination"].get("next_cursor")
        if not cursor:
            break

    assert seen == many
