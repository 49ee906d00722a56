"""Tasks: get, list and kill through the generated TasksApi and the Mixpeek wrapper."""

from __future__ import annotations

import uuid

import mixpeek
import pytest
from mixpeek.exceptions import NotFoundException

import support


@pytest.fixture
def finished_task(namespaces_api, tasks_api) -> mixpeek.TaskResponse:
    """The task of a namespace deletion, run to completion."""
    doomed = namespaces_api.create_namespace(
        mixpeek.CreateNamespaceRequest(namespace_name=support.unique_name("doomed"))
    )
    answer = namespaces_api.delete_namespace(doomed.namespace_id)
    return support.wait_for_task(tasks_api, answer["task_id"])


def test_get_task_describes_the_task(tasks_api, finished_task):
    task = tasks_api.get_task(finished_task.task_id)

    assert isinstance(task, mixpeek.TaskResponse)
    assert task.task_id == finished_task.task_id
    assert str(uuid.UUID(task.task_id)) == task.task_id.lower()
    assert task.task_type == mixpeek.TaskType.API_NAMESPACES_DELETE
    assert task.status == mixpeek.TaskStatusEnum.COMPLETED
    assert task.error is None


def test_unknown_task_is_not_found(tasks_api):
    with pytest.raises(NotFoundException) as caught:
        tasks_api.get_task(str(uuid.uuid4()))

    support.error_of(caught.value, 404)


def all_tasks(tasks_api, **body) -> list[mixpeek.TaskResponse]:
    """Every task of the caller's organization that matches the list body."""
    return support.collect(
        lambda cursor: tasks_api.list_tasks(
            limit=100, cursor=cursor, list_tasks_request=mixpeek.ListTasksRequest(**body)
        )
    )


def test_list_tasks_includes_the_task(tasks_api, finished_task):
    listing = tasks_api.list_tasks(list_tasks_request=mixpeek.ListTasksRequest())

    assert isinstance(listing, mixpeek.ListTasksResponse)
    assert isinstance(listing.pagination, mixpeek.PaginationResponse)
    assert listing.results and all(isinstance(t, mixpeek.TaskResponse) for t in listing.results)
    assert finished_task.task_id in {t.task_id for t in all_tasks(tasks_api)}


def test_list_tasks_filters_by_type_and_status(tasks_api, buckets_api, namespace, finished_task):
    bucket = buckets_api.create_bucket(support.bucket_request(support.unique_name("bucket")))
    bucket_task = support.wait_for_task(
        tasks_api, buckets_api.delete_bucket(bucket.bucket_id)["task_id"]
    )

    by_type = all_tasks(tasks_api, task_type=mixpeek.TaskType.API_BUCKETS_DELETE)
    completed = all_tasks(tasks_api, status=mixpeek.TaskStatusEnum.COMPLETED)
    failed = all_tasks(tasks_api, status=mixpeek.TaskStatusEnum.FAILED)

    assert bucket_task.task_id in {t.task_id for t in by_type}
    assert finished_task.task_id not in {t.task_id for t in by_type}
    assert all(t.task_type == mixpeek.TaskType.API_BUCKETS_DELETE for t in by_type)
    assert {bucket_task.task_id, finished_task.task_id} <= {t.task_id for t in completed}
    assert not {bucket_task.task_id, finished_task.task_id} & {t.task_id for t in failed}


def test_list_tasks_pages_with_a_limit(tasks_api, namespaces_api):
    for _ in range(3):
        doomed = namespaces_api.create_namespace(
            mixpeek.CreateNamespaceRequest(namespace_name=support.unique_name("doomed"))
        )
        support.wait_for_task(
            tasks_api, namespaces_api.delete_namespace(doomed.namespace_id)["task_id"]
        )

    first = tasks_api.list_tasks(limit=2)
    assert len(first.results) == 2
    assert first.pagination.next_cursor
    second = tasks_api.list_tasks(limit=2, cursor=first.pagination.next_cursor)

    assert not {t.task_id for t in first.results} & {t.task_id for t in second.results}


def test_kill_task_is_idempotent(tasks_api, finished_task):
    for task_id in (finished_task.task_id, finished_task.task_id, str(uuid.uuid4())):
        answer = tasks_api.kill_task(task_id)

        assert isinstance(answer, mixpeek.GenericDeleteResponse)
        assert answer.success is True


def test_tasks_are_private_to_their_organization(finished_task, other_tenant):
    theirs = mixpeek.TasksApi(other_tenant.client)

    with pytest.raises(NotFoundException) as caught:
        theirs.get_task(finished_task.task_id)

    support.error_of(caught.value, 404)
    assert finished_task.task_id not in {t.task_id for t in all_tasks(theirs)}


def test_wrapper_tasks(mp, finished_task):
    fetched = mp.tasks.get(finished_task.task_id)
    listing = mp.tasks.list()  # POST /v1/tasks/list with no body
    killed = mp.tasks.delete(finished_task.task_id)

    assert fetched.task_id == finished_task.task_id
    assert fetched.status == "COMPLETED"
    assert isinstance(listing["results"], list) and "pagination" in listing
    assert killed["success"] is True
