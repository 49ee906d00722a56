"""Filter operators, logical groups and sorting of POST …/objects/list, on a small fixed data
set. These run the same query on SQLite and PostgreSQL, where JSON comparison differs most."""

from __future__ import annotations

import mixpeek
import pytest

import support

ROWS = {
    "apple": {
        "title": "Apple pie",
        "rank": 1,
        "price": 2.5,
        "category": "fruit",
        "metadata": {"origin": "fr", "stock": 10, "organic": True},
    },
    "banana": {
        "title": "banana bread",
        "rank": 2,
        "price": 10.0,
        "category": "fruit",
        "metadata": {"origin": "us", "stock": 0, "organic": False},
    },
    "carrot": {
        "title": "Carrot cake",
        "rank": 10,
        "price": 7.25,
        "category": "vegetable",
        "metadata": {"origin": None, "stock": 3, "organic": False},
    },
    "date": {
        "title": "date square",
        "rank": 20,
        "category": "fruit",
        "metadata": {"origin": "ma", "stock": 5, "organic": True},
    },
}


@pytest.fixture
def rows(objects_api, bucket) -> dict[str, str]:
    """The ROWS, created one by one in this order; maps each row's name to its object id."""
    ids = {}
    for name, fields in ROWS.items():
        created = objects_api.create_object_buckets(
            bucket.bucket_id, support.object_request(**fields)
        )
        ids[name] = created.object_id
    return ids


def names_matching(objects_api, bucket, rows, **body) -> list[str]:
    """The names of the rows a list body returns, in the order returned."""
    by_id = {object_id: name for name, object_id in rows.items()}
    listing = objects_api.list_objects_buckets(
        bucket.bucket_id, list_objects_request=mixpeek.ListObjectsRequest.from_dict(body)
    )
    return [by_id[o.object_id] for o in listing.results]


def condition(field: str, operator: str, value) -> dict:
    return {"field": field, "operator": operator, "value": value}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        pytest.param(condition("category", "eq", "fruit"), ["apple", "banana", "date"], id="eq"),
        pytest.param(condition("category", "ne", "fruit"), ["carrot"], id="ne"),
        pytest.param(condition("rank", "gt", 2), ["carrot", "date"], id="gt-number"),
        pytest.param(condition("rank", "lt", 10), ["apple", "banana"], id="lt-number"),
        pytest.param(condition("price", "gte", 7.25), ["banana", "carrot"], id="gte-float"),
        pytest.param(condition("price", "lte", 2.5), ["apple"], id="lte-float"),
        pytest.param(
            condition("metadata.origin", "in", ["fr", "us"]), ["apple", "banana"], id="in-nested"
        ),
        pytest.param(
            condition("category", "nin", ["vegetable"]), ["apple", "banana", "date"], id="nin"
        ),
        pytest.param(condition("title", "contains", "cake"), ["carrot"], id="contains"),
        pytest.param(condition("title", "starts_with", "banana"), ["banana"], id="starts_with"),
        pytest.param(condition("title", "ends_with", "pie"), ["apple"], id="ends_with"),
        pytest.param(condition("title", "regex", "^(apple|date) "), ["apple", "date"], id="regex"),
        pytest.param(
            condition("price", "exists", True), ["apple", "banana", "carrot"], id="exists"
        ),
        pytest.param(condition("metadata.origin", "is_null", True), ["carrot"], id="is_null"),
        pytest.param(condition("metadata.organic", "eq", True), ["apple", "date"], id="eq-bool"),
        pytest.param(condition("metadata.stock", "eq", 0), ["banana"], id="eq-zero-not-false"),
    ],
)
def test_operator(objects_api, bucket, rows, where, expected):
    found = names_matching(objects_api, bucket, rows, filters={"AND": [where]})

    assert sorted(found) == expected


def test_string_matching_follows_case_sensitive(objects_api, bucket, rows):
    # The SDK sends "case_sensitive": false on every group and condition unless told otherwise.
    default = names_matching(
        objects_api, bucket, rows, filters={"AND": [condition("title", "eq", "apple PIE")]}
    )
    sensitive = names_matching(
        objects_api,
        bucket,
        rows,
        filters={
            "AND": [{**condition("title", "eq", "apple PIE"), "case_sensitive": True}],
            "case_sensitive": True,
        },
    )

    assert default == ["apple"]
    assert sensitive == []


def test_nested_groups(objects_api, bucket, rows):
    found = names_matching(
        objects_api,
        bucket,
        rows,
        filters={
            "OR": [
                condition("rank", "eq", 1),
                {
                    "AND": [
                        condition("category", "eq", "fruit"),
                        condition("price", "gt", 5),
                    ]
                },
            ]
        },
    )

    assert sorted(found) == ["apple", "banana"]


def test_not_group(objects_api, bucket, rows):
    found = names_matching(
        objects_api, bucket, rows, filters={"NOT": [condition("category", "eq", "fruit")]}
    )

    assert found == ["carrot"]


def test_filter_matching_nothing_is_an_empty_page(objects_api, bucket, rows):
    found = names_matching(
        objects_api, bucket, rows, filters={"AND": [condition("category", "eq", "mineral")]}
    )

    assert found == []


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ({"field": "rank", "direction": "asc"}, ["apple", "banana", "carrot", "date"]),
        ({"field": "rank", "direction": "desc"}, ["date", "carrot", "banana", "apple"]),
        ({"field": "metadata.stock", "direction": "asc"}, ["banana", "carrot", "date", "apple"]),
        ({"field": "created_at", "direction": "desc"}, ["date", "carrot", "banana", "apple"]),
    ],
    ids=["rank-asc", "rank-desc", "nested-number", "created-desc"],
)
def test_sort(objects_api, bucket, rows, sort, expected):
    assert names_matching(objects_api, bucket, rows, sort=sort) == expected


def test_filter_sort_and_select_together(objects_api, bucket, rows):
    listing = objects_api.list_objects_buckets(
        bucket.bucket_id,
        list_objects_request=mixpeek.ListObjectsRequest.from_dict(
            {
                "filters": {"AND": [condition("category", "eq", "fruit")]},
                "sort": {"field": "rank", "direction": "desc"},
                "select": ["title", "metadata.origin"],
            }
        ),
    )

    assert [o.additional_properties["title"] for o in listing.results] == [
        "date square",
        "banana bread",
        "Apple pie",
    ]
    first = listing.results[0].additional_properties
    assert first["metadata"] == {"origin": "ma"}
    assert "rank" not in first


def test_unknown_operator_is_unprocessable(http, namespace, bucket, rows):
    response = http.request(
        "POST",
        f"/v1/buckets/{bucket.bucket_id}/objects/list",
        namespace=namespace.namespace_id,
        json={"filters": {"AND": [condition("rank", "almost", 1)]}},
    )

    support.assert_envelope(response, 422)
