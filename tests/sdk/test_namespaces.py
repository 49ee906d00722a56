"""Namespaces through the generated NamespacesApi and the Mixpeek wrapper."""

from __future__ import annotations

import datetime as dt

import mixpeek
import pytest
from mixpeek.exceptions import ConflictException, NotFoundException, UnprocessableEntityException

import support


def create(namespaces_api: mixpeek.NamespacesApi, **fields) -> mixpeek.NamespaceModel:
    body = {"namespace_name": support.unique_name("ns"), **fields}
    created = namespaces_api.create_namespace(mixpeek.CreateNamespaceRequest.from_dict(body))
    assert isinstance(created, mixpeek.NamespaceModel)
    return created


def test_create_returns_the_namespace(namespaces_api):
    name = support.unique_name("ns")

    created = namespaces_api.create_namespace(
        mixpeek.CreateNamespaceRequest(namespace_name=name, description="made by the suite")
    )

    assert isinstance(created, mixpeek.NamespaceModel)
    assert created.namespace_id.startswith("ns_")
    assert created.namespace_name == name
    assert created.description == "made by the suite"
    assert isinstance(created.created_at, dt.datetime)
    assert isinstance(created.updated_at, dt.datetime)


def test_get_by_name_and_by_id_agree(namespaces_api):
    created = create(namespaces_api)

    by_id = namespaces_api.get_namespace(created.namespace_id)
    by_name = namespaces_api.get_namespace(created.namespace_name)

    assert by_id.namespace_id == by_name.namespace_id == created.namespace_id
    assert by_id.namespace_name == by_name.namespace_name == created.namespace_name


def test_unknown_namespace_is_not_found(namespaces_api):
    with pytest.raises(NotFoundException) as caught:
        namespaces_api.get_namespace("ns_doesnotexist0")

    support.error_of(caught.value, 404)


def test_duplicate_name_is_a_conflict(namespaces_api):
    created = create(namespaces_api)

    with pytest.raises(ConflictException) as caught:
        create(namespaces_api, namespace_name=created.namespace_name)

    support.error_of(caught.value, 409)


def test_invalid_name_is_refused_with_an_envelope(namespaces_api):
    # The SDK checks the length itself; construct() lets the bad value through to the server.
    request = mixpeek.CreateNamespaceRequest.model_construct(namespace_name="x")

    with pytest.raises(UnprocessableEntityException) as caught:
        namespaces_api.create_namespace(request)

    envelope = support.error_of(caught.value, 422)
    assert "namespace_name" in support.dump(envelope)


def test_list_post_and_get_include_new_namespaces(namespaces_api):
    first, second = create(namespaces_api), create(namespaces_api)

    # The session's server holds every test's namespaces: ask for the largest page.
    posted = namespaces_api.list_namespaces(
        list_namespaces_request=mixpeek.ListNamespacesRequest(limit=1000)
    )
    got = namespaces_api.list_namespaces_get(limit=1000)

    for listing in (posted, got):
        assert isinstance(listing, mixpeek.ListNamespacesResponse)
        assert isinstance(listing.pagination, mixpeek.PaginationResponse)
        ids = {ns.namespace_id for ns in listing.results}
        assert {first.namespace_id, second.namespace_id} <= ids
        assert listing.total_count >= 2


def test_list_honours_limit(namespaces_api):
    create(namespaces_api)
    create(namespaces_api)

    page = namespaces_api.list_namespaces_get(limit=1)

    assert len(page.results) == 1
    assert page.total_count >= 2


def test_list_filters_by_name_in_the_body(namespaces_api):
    wanted = create(namespaces_api)
    create(namespaces_api)

    listing = namespaces_api.list_namespaces(
        list_namespaces_request=mixpeek.ListNamespacesRequest(
            filters={"namespace_name": wanted.namespace_name}
        )
    )

    assert [ns.namespace_id for ns in listing.results] == [wanted.namespace_id]


def test_put_renames(namespaces_api):
    created = create(namespaces_api)
    new_name = support.unique_name("renamed")

    updated = namespaces_api.update_namespace(
        created.namespace_id, mixpeek.UpdateNamespaceRequest(namespace_name=new_name)
    )

    assert updated.namespace_id == created.namespace_id
    assert updated.namespace_name == new_name
    assert namespaces_api.get_namespace(new_name).namespace_id == created.namespace_id
    with pytest.raises(NotFoundException):
        namespaces_api.get_namespace(created.namespace_name)


def test_rename_onto_a_taken_name_is_a_conflict(namespaces_api):
    first, second = create(namespaces_api), create(namespaces_api)

    with pytest.raises(ConflictException) as caught:
        namespaces_api.update_namespace(
            second.namespace_id, mixpeek.UpdateNamespaceRequest(namespace_name=first.namespace_name)
        )

    support.error_of(caught.value, 409)
    assert namespaces_api.get_namespace(second.namespace_id).namespace_name == second.namespace_name


def test_patch_changes_only_what_it_sends(namespaces_api):
    created = create(namespaces_api, description="before")

    patched = namespaces_api.patch_namespace(
        created.namespace_name, mixpeek.PatchNamespaceRequest(description="after")
    )

    assert patched.namespace_id == created.namespace_id
    assert patched.namespace_name == created.namespace_name
    assert patched.description == "after"
    assert patched.updated_at > created.updated_at
    assert patched.created_at == created.created_at
    assert namespaces_api.get_namespace(created.namespace_id).description == "after"


def test_stats_count_buckets_and_objects(namespaces_api, namespace, buckets_api, objects_api):
    bucket = buckets_api.create_bucket(support.bucket_request(support.unique_name("bucket")))
    for title in ("one", "two"):
        objects_api.create_object_buckets(bucket.bucket_id, support.object_request(title=title))

    stats = namespaces_api.get_namespace_stats(namespace.namespace_id)

    assert isinstance(stats, mixpeek.NamespaceStatsResponse)
    assert stats.namespace_id == namespace.namespace_id
    assert stats.bucket_count == 1
    assert stats.object_count == 2


def test_delete_runs_a_task_to_completion(namespaces_api, tasks_api):
    created = create(namespaces_api)

    answer = namespaces_api.delete_namespace(created.namespace_id)

    assert isinstance(answer, dict) and answer.get("task_id"), answer
    task = support.wait_for_task(tasks_api, answer["task_id"])
    assert task.status == mixpeek.TaskStatusEnum.COMPLETED, support.dump(task)
    assert task.task_type == mixpeek.TaskType.API_NAMESPACES_DELETE
    with pytest.raises(NotFoundException) as caught:
        namespaces_api.get_namespace(created.namespace_id)
    support.error_of(caught.value, 404)


def test_delete_removes_buckets_and_objects(
    namespaces_api, namespace, buckets_api, objects_api, tasks_api
):
    bucket = buckets_api.create_bucket(support.bucket_request(support.unique_name("bucket")))
    objects_api.create_object_buckets(bucket.bucket_id, support.object_request(title="gone"))

    answer = namespaces_api.delete_namespace(namespace.namespace_id)
    support.wait_for_task(tasks_api, answer["task_id"])

    # The generated client still sends the deleted namespace's id as X-Namespace.
    with pytest.raises(NotFoundException):
        buckets_api.get_bucket(bucket.bucket_id)
    recreated = create(namespaces_api, namespace_name=namespace.namespace_name)
    assert recreated.namespace_id != namespace.namespace_id
    buckets_api.api_client.configuration.api_key["NamespaceHeader"] = recreated.namespace_id
    with pytest.raises(NotFoundException):
        buckets_api.get_bucket(bucket.bucket_id)
    assert buckets_api.list_buckets_get().results == []


def test_other_organization_cannot_see_or_touch_the_namespace(namespaces_api, other_tenant):
    created = create(namespaces_api)
    theirs = mixpeek.NamespacesApi(other_tenant.client)

    for identifier in (created.namespace_id, created.namespace_name):
        with pytest.raises(NotFoundException) as caught:
            theirs.get_namespace(identifier)
        support.error_of(caught.value, 404)
    with pytest.raises(NotFoundException):
        theirs.patch_namespace(created.namespace_id, mixpeek.PatchNamespaceRequest(description="x"))
    with pytest.raises(NotFoundException):
        theirs.delete_namespace(created.namespace_id)
    assert created.namespace_id not in {
        ns.namespace_id for ns in theirs.list_namespaces_get().results
    }
    # Names are unique per organization, not across organizations.
    same_name = theirs.create_namespace(
        mixpeek.CreateNamespaceRequest(namespace_name=created.namespace_name)
    )
    assert same_name.namespace_id != created.namespace_id


def test_wrapper_namespace_lifecycle(server, tasks_api):
    mp = mixpeek.Mixpeek(api_key=server.api_key, base_url=f"{server.base_url}/v1")
    name = support.unique_name("wrapped")

    created = mp.namespaces.create(name=name, description="via the wrapper")
    assert created["namespace_id"].startswith("ns_")
    assert created.namespace_name == name

    assert mp.namespaces.get(name)["namespace_id"] == created.namespace_id
    listing = mp.namespaces.list()
    assert listing["total_count"] >= 1 and listing["results"]
    assert all(ns["namespace_id"].startswith("ns_") for ns in listing["results"])

    deleted = mp.namespaces.delete(created.namespace_id)
    task = mp.tasks.get(deleted["task_id"])
    assert task["task_id"] == deleted["task_id"]
    assert support.wait_for_task(tasks_api, deleted["task_id"]).status == "COMPLETED"

    with pytest.raises(support.MixpeekAPIError) as caught:
        mp.namespaces.get(created.namespace_id)
    assert caught.value.status == 404
    assert caught.value.detail["error"]["type"]
