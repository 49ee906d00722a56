"""Bucket syncs through the generated BucketSyncsApi, from an S3 connection to moto: every
answer must deserialize into the SDK's models."""

from __future__ import annotations

import os
import time

import mixpeek
import requests
import pytest
from mixpeek.exceptions import NotFoundException, UnprocessableEntityException

import harness
import support

pytestmark = pytest.mark.skipif(
    "SLUICE_TEST_S3_ENDPOINT" not in os.environ, reason="needs moto from scripts/services.sh"
)

def seed(prefix: str, files: dict[str, bytes]) -> str:
    """A fresh moto bucket holding `files` under `prefix`. moto takes unsigned requests that
    create a bucket or a new key."""
    endpoint = os.environ["SLUICE_TEST_S3_ENDPOINT"]
    bucket = support.unique_name("sdk-sync").lower().replace("_", "-")
    requests.put(f"{endpoint}/{bucket}", timeout=10).raise_for_status()
    for name, body in files.items():
        requests.put(f"{endpoint}/{bucket}/{prefix}/{name}", data=body, timeout=10).raise_for_status()
    return bucket


def wait_for_runs(syncs_api, bucket_id: str, sync_id: str, count: int) -> list:
    for _ in range(300):
        page = syncs_api.list_sync_jobs_buckets_id_config(
            bucket_id, sync_id, list_sync_jobs_request=mixpeek.ListSyncJobsRequest()
        )
        done = [j for j in page.results if j.status != mixpeek.SyncJobStatus.RUNNING]
        if len(done) >= count:
            return done
        time.sleep(0.1)
    pytest.fail(f"the sync did not finish {count} runs")


def test_sync_from_s3(tmp_path_factory, backend):
    source = seed("photos", {"a.txt": b"alpha", "b.txt": b"bravo", "notes.md": b"# skip"})
    allow = {"SLUICE_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8"}
    workdir = tmp_path_factory.mktemp("syncs")
    with (
        harness.fresh_store(backend) as database_url,
        harness.running_server(backend, workdir, database_url, extra_env=allow) as srv,
        mixpeek.ApiClient(
            mixpeek.Configuration(host=srv.base_url, access_token=srv.api_key)
        ) as api,
    ):
        connection = mixpeek.OrganizationConnectionsApi(api).create_storage_connection_organizations(
            mixpeek.StorageConnectionCreateRequest.from_dict({
                "name": "moto",
                "provider_type": "s3",
                "provider_config": {
                    "endpoint_url": os.environ["SLUICE_TEST_S3_ENDPOINT"],
                    "credentials": {"type": "access_key", "access_key_id": "sluice-test",
                                    "secret_access_key": "sluice-test-secret"},
                },
            })
        )  # fmt: skip
        namespace = mixpeek.NamespacesApi(api).create_namespace(
            mixpeek.CreateNamespaceRequest(namespace_name=support.unique_name("sync"))
        )
        api.configuration.api_key["NamespaceHeader"] = namespace.namespace_id
        bucket = mixpeek.BucketsApi(api).create_bucket(
            mixpeek.BucketCreateRequest.from_dict({
                "bucket_name": support.unique_name("synced"),
                "bucket_schema": {"properties": {"content": {"type": "text"}}},
            })
        )  # fmt: skip
        syncs = mixpeek.BucketSyncsApi(api)
        created = syncs.create_sync_configuration_buckets(
            bucket.bucket_id,
            mixpeek.SyncCreateRequest.from_dict({
                "connection_id": connection.connection_id,
                "source_path": f"{source}/photos",
                "polling_interval_seconds": 3600,
                "file_filters": {"include_patterns": ["*.txt"]},
                "skip_batch_submission": True,
            }),
        )  # fmt: skip
        assert isinstance(created, mixpeek.SyncConfigurationModel)
        assert created.sync_config_id.startswith("sync_")
        assert created.bucket_id == bucket.bucket_id
        sync_id = created.sync_config_id

        [first] = wait_for_runs(syncs, bucket.bucket_id, sync_id, 1)
        assert isinstance(first, mixpeek.SyncJobModel)
        assert first.status == mixpeek.SyncJobStatus.COMPLETED
        assert first.files_synced == 2
        got = syncs.get_sync_configuration_buckets_id_config(bucket.bucket_id, sync_id)
        assert got.total_files_synced == 2

        answer = syncs.trigger_sync_configuration_buckets_id_config(bucket.bucket_id, sync_id)
        runs = wait_for_runs(syncs, bucket.bucket_id, sync_id, 2)
        assert runs[0].sync_job_id == answer["sync_job_id"]
        assert runs[0].files_synced == 0
        one = syncs.get_sync_job_buckets_id_config(bucket.bucket_id, sync_id, runs[0].sync_job_id)
        assert one.trigger == mixpeek.SyncJobTrigger.MANUAL

        paused = syncs.pause_sync_configuration_buckets_id_config(bucket.bucket_id, sync_id)
        assert paused.paused is True
        resumed = syncs.resume_sync_configuration_buckets_id_config(bucket.bucket_id, sync_id)
        assert resumed.paused is False
        metrics = syncs.get_sync_metrics_buckets_id_config(bucket.bucket_id, sync_id)
        assert isinstance(metrics, mixpeek.SyncMetricsResponse)
        assert metrics.total_files_synced == 2
        listed = syncs.list_sync_configurations_buckets(bucket.bucket_id)
        assert isinstance(listed, mixpeek.SyncListResponse)
        assert [s.sync_config_id for s in listed.results] == [sync_id]

        objects = mixpeek.BucketObjectsApi(api).list_objects_buckets(bucket.bucket_id)
        assert sorted(o.blobs[0].details.filename for o in objects.results) == ["a.txt", "b.txt"]

        bad = mixpeek.SyncCreateRequest.from_dict({
            "connection_id": connection.connection_id, "source_path": f"{source}/photos",
            "file_filters": {"mime_types": ["png"]},
        })  # fmt: skip
        with pytest.raises(UnprocessableEntityException):
            syncs.create_sync_configuration_buckets(bucket.bucket_id, bad)
        syncs.delete_sync_configuration_buckets_id_config(bucket.bucket_id, sync_id)
        with pytest.raises(NotFoundException):
            syncs.get_sync_configuration_buckets_id_config(bucket.bucket_id, sync_id)


FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>News</title>
<item><guid>n-1</guid><title>First story</title><author>ann@example.com</author>
<category>Local</category></item>
<item><guid>n-2</guid><title>Second story</title><category>World</category></item>
</channel></rss>"""


@pytest.fixture
def feed_url():
    """An RSS feed served on a local port for the length of a test."""
    import http.server
    import threading

    class Feed(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(FEED)))
            self.end_headers()
            self.wfile.write(FEED)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
    server.shutdown()


def test_feed_sync_with_field_mappings(tmp_path_factory, backend, feed_url):
    """An RSS sync whose mapping, built from the SDK's models, fills fields from each entry."""
    allow = {"SLUICE_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8"}
    workdir = tmp_path_factory.mktemp("feeds")
    with (
        harness.fresh_store(backend) as database_url,
        harness.running_server(backend, workdir, database_url, extra_env=allow) as srv,
        mixpeek.ApiClient(
            mixpeek.Configuration(host=srv.base_url, access_token=srv.api_key)
        ) as api,
    ):
        connection = mixpeek.OrganizationConnectionsApi(api).create_storage_connection_organizations(
            mixpeek.StorageConnectionCreateRequest.from_dict(
                {"name": "news", "provider_type": "rss", "provider_config": {"provider_type": "rss"}}
            )
        )
        namespace = mixpeek.NamespacesApi(api).create_namespace(
            mixpeek.CreateNamespaceRequest(namespace_name=support.unique_name("feed"))
        )
        api.configuration.api_key["NamespaceHeader"] = namespace.namespace_id
        bucket = mixpeek.BucketsApi(api).create_bucket(
            mixpeek.BucketCreateRequest.from_dict({
                "bucket_name": support.unique_name("news"),
                "bucket_schema": {"properties": {"content": {"type": "text"},
                                                 "headline": {"type": "string"},
                                                 "section": {"type": "array"},
                                                 "feed": {"type": "string"}}},
            })
        )  # fmt: skip
        mapping = mixpeek.SchemaMappingInput.from_dict({"mappings": {
            "content": {"target_type": "blob", "source": {"type": "file"}, "blob_type": "text"},
            "headline": {"target_type": "field",
                         "source": {"type": "rss_field", "field": "title"}},
            "section": {"target_type": "field",
                        "source": {"type": "rss_field", "field": "categories"},
                        "transform": "lowercase"},
            "feed": {"target_type": "field", "source": {"type": "constant", "value": "news"}},
        }})  # fmt: skip
        request = mixpeek.SyncCreateRequest.from_dict({
            "connection_id": connection.connection_id,
            "source_path": feed_url,
            "sync_mode": "initial_only",
        })  # fmt: skip
        request.schema_mapping = mapping
        syncs = mixpeek.BucketSyncsApi(api)
        created = syncs.create_sync_configuration_buckets(bucket.bucket_id, request)
        assert isinstance(created, mixpeek.SyncConfigurationModel)
        [run] = wait_for_runs(syncs, bucket.bucket_id, created.sync_config_id, 1)
        assert run.status == mixpeek.SyncJobStatus.COMPLETED
        assert run.files_synced == 2

        objects = mixpeek.BucketObjectsApi(api).list_objects_buckets(bucket.bucket_id)
        fields = sorted(
            (o.to_dict()["headline"], o.to_dict().get("section"), o.to_dict()["feed"])
            for o in objects.results
        )
        assert fields == [("First story", ["local"], "news"), ("Second story", ["world"], "news")]
