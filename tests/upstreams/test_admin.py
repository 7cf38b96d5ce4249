"""The admin: upstream keys are write-only, client keys are shown once, the audit log is read-only."""
from __future__ import annotations

import re

import pytest
from django.test import Client

from upstreams.models import ClientKey, RequestLog, Upstream

pytestmark = pytest.mark.django_db

UPSTREAM_FORM = {"name": "ds", "base_url": "http://127.0.0.1:9/v1", "models": "deepseek-*", "model_map": "",
                 "priority": "0", "enabled": "on", "connect_timeout": "10", "read_timeout": "300",
                 "max_tokens_field": "max_tokens", "send_stream_options": "on"}


@pytest.fixture
def staff(admin_client: Client) -> Client:
    return admin_client


def test_upstream_key_is_never_rendered_and_kept_when_left_blank(staff: Client) -> None:
    response = staff.post("/admin/upstreams/upstream/add/", {**UPSTREAM_FORM, "api_key": "sk-live-TOPSECRET-1"})
    assert response.status_code == 302
    upstream = Upstream.objects.get(name="ds")
    assert upstream.api_key == "sk-live-TOPSECRET-1"
    for page in ("/admin/upstreams/upstream/", f"/admin/upstreams/upstream/{upstream.pk}/change/"):
        html = staff.get(page).content.decode()
        assert "TOPSECRET" not in html
    staff.post(f"/admin/upstreams/upstream/{upstream.pk}/change/", {**UPSTREAM_FORM, "priority": "3", "api_key": ""})
    upstream.refresh_from_db()
    assert (upstream.priority, upstream.api_key) == (3, "sk-live-TOPSECRET-1")
    staff.post(f"/admin/upstreams/upstream/{upstream.pk}/change/", {**UPSTREAM_FORM, "clear_api_key": "on"})
    upstream.refresh_from_db()
    assert upstream.api_key == ""


def test_new_client_key_is_shown_once_and_stored_hashed(staff: Client) -> None:
    response = staff.post("/admin/upstreams/clientkey/add/", {"name": "bob", "active": "on", "rate_limit": ""},
                          follow=True)
    [secret] = re.findall(r"sk-cgw-[A-Za-z0-9_-]{40,}", response.content.decode())
    key = ClientKey.objects.get(name="bob")
    assert ClientKey.objects.for_secret(secret) == key
    again = staff.get(f"/admin/upstreams/clientkey/{key.pk}/change/").content.decode()
    assert secret not in again


def test_request_log_is_read_only_with_filters(staff: Client) -> None:
    RequestLog.objects.create(request_id="req_1", endpoint="responses", outcome="ok", model="m")
    listing = staff.get("/admin/upstreams/requestlog/?outcome__exact=ok&q=req_1")
    assert listing.status_code == 200 and "req_1" in listing.content.decode()
    assert staff.get("/admin/upstreams/requestlog/add/").status_code == 403
    row = RequestLog.objects.get()
    page = staff.get(f"/admin/upstreams/requestlog/{row.pk}/change/")
    assert page.status_code == 200 and b'type="submit" value="Save"' not in page.content
