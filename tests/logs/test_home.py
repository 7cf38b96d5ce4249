"""The site's front door (logs/pages/home.py): ``GET /`` and ``/favicon.ico``, no longer the API's JSON 404."""
from __future__ import annotations

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.servers import Gateway

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.mark.django_db
def test_staff_opening_the_bare_host_go_to_the_request_log(admin_client: Client) -> None:
    answer = admin_client.get("/", HTTP_ACCEPT=BROWSER)
    assert (answer.status_code, answer["Location"]) == (302, "/logs/")


@pytest.mark.django_db
def test_a_browser_is_told_where_the_api_and_the_request_log_are(client: Client) -> None:
    answer = client.get("/", HTTP_ACCEPT=BROWSER)
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/html")
    text = " ".join(answer.content.decode().split())
    assert "the OpenAI-compatible API is at <code>/v1/</code>" in text
    for endpoint in ("POST /v1/responses", "POST /v1/chat/completions", "GET /v1/models"):
        assert f"<code>{endpoint}</code>" in text
    assert 'sign in to the request log at <a href="/logs/">/logs/</a>' in text
    assert "Accept" in answer["Vary"]


@pytest.mark.django_db
def test_a_signed_in_user_who_is_not_staff_is_told_too(client: Client) -> None:
    client.force_login(get_user_model().objects.create_user("bob", password="pw-not-staff"))
    assert client.get("/", HTTP_ACCEPT=BROWSER).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("accept", ["*/*", "application/json", ""])
def test_a_client_gets_json_naming_the_api(client: Client, accept: str) -> None:
    answer = client.get("/", HTTP_ACCEPT=accept) if accept else client.get("/")
    assert answer.status_code == 200 and answer["Content-Type"] == "application/json"
    body = answer.json()
    assert body["service"] == "codex-gateway" and body["api"] == "/v1" and body["request_log"] == "/logs/"
    assert "POST /v1/responses" in body["endpoints"] and "GET /v1/models" in body["endpoints"]


@pytest.mark.django_db
def test_the_front_door_takes_only_reads(client: Client) -> None:
    assert client.head("/").status_code == 200
    assert client.post("/").status_code == 405


@pytest.mark.django_db
def test_the_favicon_is_an_svg_icon(client: Client) -> None:
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200 and answer["Content-Type"] == "image/svg+xml"
    assert answer.content.startswith(b"<svg") and b"</svg>" in answer.content
    assert "max-age" in answer["Cache-Control"]


@pytest.mark.django_db
def test_the_pages_link_the_icon_and_follow_the_colour_scheme(admin_client: Client) -> None:
    logs = admin_client.get("/logs/").content.decode()
    assert '<meta name="color-scheme" content="light dark">' in logs
    assert '<link rel="icon" href="/static/logs/favicon.svg" type="image/svg+xml">' in logs
    assert '<link rel="icon" href="/static/logs/favicon.svg"' in admin_client.get("/admin/").content.decode()


def test_through_the_gateway_the_bare_host_and_the_icon_are_djangos_not_the_apis_404(gateway: Gateway) -> None:
    """The API app sends what it does not serve to Django: ``/`` and ``/favicon.ico`` now resolve there."""
    page = httpx.get(f"{gateway.url}/", headers={"accept": BROWSER})
    assert page.status_code == 200 and "the OpenAI-compatible API is at" in page.text
    answer = httpx.get(f"{gateway.url}/")
    assert answer.status_code == 200 and answer.json()["api"] == "/v1"
    icon = httpx.get(f"{gateway.url}/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert httpx.get(f"{gateway.url}/static/logs/favicon.svg").content == icon.content
    assert httpx.post(f"{gateway.url}/v1/nope", json={}).json()["error"]["code"] == "unknown_url"  # still the API's
