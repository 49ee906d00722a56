"""A restart keeps everything: namespaces, buckets, objects, tasks and keys. A second start
does not bootstrap again, whatever SLUICE_BOOTSTRAP_API_KEY says then."""

from __future__ import annotations

from dataclasses import dataclass

import mixpeek
import pytest
from mixpeek.exceptions import UnauthorizedException

import harness
import support


@dataclass
class Seeded:
    """What the first run created and the second run must find."""

    api_key: str
    organization_id: str
    namespace_id: str
    bucket_id: str
    obj: mixpeek.ObjectResponse
    task_id: str


def client(srv: harness.Server, api_key: str, namespace: str | None = None) -> mixpeek.ApiClient:
    config = mixpeek.Configuration(host=srv.base_url, access_token=api_key)
    if namespace:
        config.api_key["NamespaceHeader"] = namespace
    return mixpeek.ApiClient(config)


def seed(srv: harness.Server) -> Seeded:
    with client(srv, srv.api_key) as api:
        namespaces = mixpeek.NamespacesApi(api)
        org = mixpeek.AccountApi(api).whoami_me().organization_id
        ns = namespaces.create_namespace(
            mixpeek.CreateNamespaceRequest(namespace_name=support.unique_name("kept"))
        )
        api.configuration.api_key["NamespaceHeader"] = ns.namespace_id
        bucket = mixpeek.BucketsApi(api).create_bucket(
            support.bucket_request(support.unique_name("kept"))
        )
        obj = mixpeek.BucketObjectsApi(api).create_object_buckets(
            bucket.bucket_id,
            support.object_request(
                title="kept", blobs=[support.png_data_uri_blob()], idempotency_key="k"
            ),
        )
        doomed = namespaces.create_namespace(
            mixpeek.CreateNamespaceRequest(namespace_name=support.unique_name("doomed"))
        )
        task_id = namespaces.delete_namespace(doomed.namespace_id)["task_id"]
        support.wait_for_task(mixpeek.TasksApi(api), task_id)
    return Seeded(srv.api_key, org, ns.namespace_id, bucket.bucket_id, obj, task_id)


def test_restart_keeps_data_and_does_not_bootstrap_again(backend, tmp_path):
    second_bootstrap_key = harness.new_api_key()

    with harness.fresh_store(backend) as database_url:
        with harness.running_server(backend, tmp_path, database_url) as first:
            seeded = seed(first)
        with harness.running_server(
            backend, tmp_path, database_url, api_key=second_bootstrap_key
        ) as second:
            with client(second, seeded.api_key, seeded.namespace_id) as api:
                me = mixpeek.AccountApi(api).whoami_me()
                objects = mixpeek.BucketObjectsApi(api)
                fetched = objects.get_object_buckets(seeded.bucket_id, seeded.obj.object_id)
                replay = objects.create_object_buckets(
                    seeded.bucket_id, support.object_request(idempotency_key="k")
                )
                bucket = mixpeek.BucketsApi(api).get_bucket(seeded.bucket_id)
                task = mixpeek.TasksApi(api).get_task(seeded.task_id)
            with client(second, second_bootstrap_key) as api, pytest.raises(UnauthorizedException):
                mixpeek.AccountApi(api).whoami_me()

    assert me.organization_id == seeded.organization_id
    assert fetched.additional_properties["title"] == "kept"
    assert fetched.blobs[0].details.to_dict() == seeded.obj.blobs[0].details.to_dict()
    assert replay.object_id == seeded.obj.object_id
    assert (bucket.object_count, bucket.total_size_bytes) == (1, len(support.PNG_BYTES))
    assert task.status == mixpeek.TaskStatusEnum.COMPLETED
