"""Helpers shared by the SDK suite's test modules: names, schemas, requests, polling, errors."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import mixpeek
import requests
from mixpeek._client.client import MixpeekAPIError  # noqa: F401  (the wrapper's error, for tests)
from mixpeek.exceptions import ApiException

# A valid 1x1 PNG, so that a server that sniffs or validates images accepts it.
PNG_BYTES = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
PNG_BASE64 = base64.b64encode(PNG_BYTES).decode()

# The bucket schema most tests use: four metadata fields and two blob properties.
STANDARD_SCHEMA: dict[str, Any] = {
    "properties": {
        "title": {"type": "string", "description": "a human title"},
        "category": {"type": "string"},
        "rank": {"type": "integer"},
        "sku": {"type": "string"},
        "content": {"type": "text"},
        "image": {"type": "image"},
    }
}

TERMINAL_TASK_STATES = {
    mixpeek.TaskStatusEnum.COMPLETED,
    mixpeek.TaskStatusEnum.COMPLETED_WITH_ERRORS,
    mixpeek.TaskStatusEnum.FAILED,
    mixpeek.TaskStatusEnum.CANCELED,
}


def unique_name(prefix: str) -> str:
    """A name no other test uses; 3-64 characters, letters, digits and dashes."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def bucket_request(name: str, **fields: Any) -> mixpeek.BucketCreateRequest:
    """A BucketCreateRequest built the way SDK users build one, from plain dicts."""
    body = {"bucket_name": name, "bucket_schema": STANDARD_SCHEMA, **fields}
    request = mixpeek.BucketCreateRequest.from_dict(body)
    assert request is not None
    return request


def object_request(**fields: Any) -> mixpeek.CreateObjectRequest:
    """A CreateObjectRequest from a plain dict; unknown keys become custom root fields."""
    request = mixpeek.CreateObjectRequest.from_dict(fields)
    assert request is not None
    return request


def text_blob(text: str, prop: str = "content") -> dict[str, Any]:
    return {"property": prop, "type": "text", "data": text}


def png_data_uri_blob(prop: str = "image") -> dict[str, Any]:
    return {"property": prop, "type": "image", "data": f"data:image/png;base64,{PNG_BASE64}"}


def png_base64_blob(filename: str = "pixel.png", prop: str = "image") -> dict[str, Any]:
    return {
        "property": prop,
        "type": "image",
        "data": {"base64": PNG_BASE64, "mime_type": "image/png", "filename": filename},
    }


def wait_for_task(
    tasks_api: mixpeek.TasksApi, task_id: str, timeout_s: float = 60.0
) -> mixpeek.TaskResponse:
    """Polls GET /v1/tasks/{id} until the task reaches a terminal state."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        task = tasks_api.get_task(task_id)
        assert isinstance(task, mixpeek.TaskResponse)
        if task.status in TERMINAL_TASK_STATES:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} still {task.status} after {timeout_s:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def collect(list_page: Callable[[str | None], Any], max_pages: int = 50) -> list[Any]:
    """Every result of a cursor-paginated listing: `list_page(cursor)` returns one page."""
    results: list[Any] = []
    cursor = None
    for _ in range(max_pages):
        page = list_page(cursor)
        results += page.results
        cursor = page.pagination.next_cursor
        if not cursor:
            return results
    raise AssertionError(f"the listing did not end within {max_pages} pages")


def error_of(exc: ApiException, status: int) -> mixpeek.ErrorResponse:
    """The parsed error envelope of an SDK exception, checked against the HTTP status.

    The SDK parses `e.data` itself for the statuses the operation declares (400, 401, 403,
    404, 422, 429, 500, 503); for others (409) it keeps only the raw body, which is parsed
    here with the same model.
    """
    assert exc.status == status, f"expected HTTP {status}, got {exc.status}: {exc.body}"
    envelope = exc.data
    if envelope is None and status == 409:
        envelope = mixpeek.ErrorResponse.from_json(exc.body or "null")
    assert isinstance(envelope, mixpeek.ErrorResponse), (
        f"the SDK could not parse the error envelope: {exc.body}"
    )
    assert envelope.status == status
    assert envelope.success is False
    assert envelope.error.message.strip()
    assert envelope.error.type.strip()
    return envelope


class Http:
    """Plain HTTP against sluice, for what the SDK cannot send or does not expose."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def request(
        self, method: str, path: str, *, namespace: str | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if namespace:
            headers["X-Namespace"] = namespace
        return self.session.request(
            method, f"{self.base_url}{path}", headers=headers, timeout=30, **kwargs
        )


def assert_envelope(response: requests.Response, status: int) -> dict[str, Any]:
    """Checks a raw HTTP error answer: the status, JSON, and the Mixpeek error envelope."""
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text[:500]}"
    )
    assert response.headers.get("content-type", "").startswith("application/json")
    body = response.json()
    envelope = mixpeek.ErrorResponse.from_dict(body)
    assert envelope is not None and envelope.status == status, body
    assert envelope.error.message and envelope.error.type, body
    return body


def dump(model: Any) -> str:
    """A model or value as JSON, for assertion messages."""
    if hasattr(model, "to_dict"):
        model = model.to_dict()
    return json.dumps(model, default=str, indent=1)[:2000]
