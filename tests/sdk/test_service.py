"""Health, authentication, /v1/me, the error envelope on unknown routes, and the admin CLI."""

from __future__ import annotations

import time

import mixpeek
import pytest
from mixpeek.exceptions import UnauthorizedException

import support

# How long a revoked key may keep working (the server caches authenticated keys briefly).
REVOCATION_DELAY_S = 10.0


def test_health_answers_without_a_key(server, http):
    anonymous = support.Http(server.base_url, api_key=None)

    response = anonymous.request("GET", "/v1/health")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json(), dict)


def test_health_through_the_generated_client(api_client):
    health = mixpeek.HealthApi(api_client).healthcheck_health()

    assert isinstance(health, dict)


def test_me_describes_the_bootstrap_key(api_client):
    me = mixpeek.AccountApi(api_client).whoami_me()

    assert isinstance(me, mixpeek.MeResponse)
    assert me.organization_id.startswith("org_")
    assert me.account_type
    assert isinstance(me.key, mixpeek.MeKeyInfo)


def test_me_of_a_second_organization_names_that_organization(other_tenant):
    me = mixpeek.AccountApi(other_tenant.client).whoami_me()

    assert me.organization_id == other_tenant.organization_id


def test_unknown_key_is_unauthorized_with_an_envelope(server):
    config = mixpeek.Configuration(host=server.base_url, access_token="sk_" + "0" * 48)
    with mixpeek.ApiClient(config) as client, pytest.raises(UnauthorizedException) as caught:
        mixpeek.AccountApi(client).whoami_me()

    support.error_of(caught.value, 401)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic c2x1aWNlOnNsdWljZQ=="}, {"Authorization": "Bearer "}],
    ids=["no-header", "basic-auth", "empty-bearer"],
)
def test_requests_without_a_bearer_key_are_refused(server, headers):
    anonymous = support.Http(server.base_url, api_key=None)

    response = anonymous.request("GET", "/v1/me", headers=headers)

    support.assert_envelope(response, 401)


def test_namespaced_route_without_a_namespace_is_a_client_error(http):
    response = http.request("POST", "/v1/buckets/list", json={})

    assert response.status_code in (400, 422), response.text
    support.assert_envelope(response, response.status_code)


def test_unknown_namespace_header_is_not_found(http):
    response = http.request("POST", "/v1/buckets/list", json={}, namespace="ns_doesnotexist")

    support.assert_envelope(response, 404)


def test_unknown_route_answers_the_error_envelope(http):
    response = http.request("GET", "/v1/no-such-route")

    support.assert_envelope(response, 404)


def test_malformed_json_is_a_client_error_with_an_envelope(http):
    response = http.request(
        "POST",
        "/v1/namespaces",
        data=b'{"namespace_name": ',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code in (400, 422), response.text
    support.assert_envelope(response, response.status_code)


def test_revoked_key_stops_working(server, other_tenant):
    me = mixpeek.AccountApi(other_tenant.client)
    assert me.whoami_me().organization_id == other_tenant.organization_id

    listing = server.admin("key", "list", "--org", other_tenant.organization_id)
    key_ids = [line.split()[0] for line in listing.splitlines() if line.strip()]
    assert len(key_ids) == 1 and key_ids[0].startswith("key_"), listing
    server.admin("key", "revoke", key_ids[0])

    # The server may trust an authenticated key for a few seconds before it looks it up again.
    deadline = time.monotonic() + REVOCATION_DELAY_S
    while True:
        try:
            me.whoami_me()
        except UnauthorizedException as exc:
            support.error_of(exc, 401)
            break
        assert time.monotonic() < deadline, f"the key still works {REVOCATION_DELAY_S} s later"
        time.sleep(0.1)
    assert "revoked" in server.admin("key", "list", "--org", other_tenant.organization_id)


def test_bootstrap_key_is_listed_but_never_printed_in_full(server):
    listing = server.admin("key", "list")

    assert server.api_key not in listing
