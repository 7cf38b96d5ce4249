"""Upstream keys at rest: encrypted in the database, never shown in the admin, rotatable with rotatekeys."""
from __future__ import annotations

import importlib
import io
import runpy
import secrets
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core import serializers
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test import Client, override_settings
from django.urls import Resolver404, resolve

from logs.models import RequestLog
from plumbing import dbthread
from tests.servers import ROOT
from upstreams.crypto import PREFIX, DecryptionError
from upstreams.models import Upstream

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
UPSTREAM_FORM = {"name": "ds", "base_url": "http://127.0.0.1:9/v1", "api": "chat", "models": "deepseek-*",
                 "model_map": "",
                 "priority": "0", "weight": "1", "enabled": "on", "connect_timeout": "10", "first_byte_timeout": "900",
                 "read_timeout": "300", "max_tokens_field": "max_tokens", "send_stream_options": "on"}


def fresh_key() -> str:
    """A key no other test wrote: the database file may still hold old rows' bytes."""
    return f"sk-upstream-{secrets.token_hex(16)}"


def stored(name: str) -> str:
    """Return the api_key column exactly as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM upstreams_upstream WHERE name = %s", [name])
        return cursor.fetchone()[0]


def store_raw(name: str, value: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE upstreams_upstream SET api_key = %s WHERE name = %s", [value, name])


def _routed(path: str) -> bool:
    try:
        resolve(path)
    except Resolver404:
        return False
    return True


def database_file_bytes() -> bytes:
    """Return the SQLite database's bytes, with its write-ahead log, where committed rows land first.

    This process's SQLite connections are closed first: closing any other descriptor of the
    file drops every POSIX lock the process holds on it, so a connection left open (a database
    thread's, from an earlier test) would lose its locks, and the next process to open the
    file (a gateway) would reset the WAL under it ("disk I/O error" in the tests after).
    """
    connections.close_all()
    dbthread.close_connections()
    path = Path(connection.settings_dict["NAME"])
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal")) if p.exists())


@pytest.mark.django_db(transaction=True)
def test_raw_key_never_reaches_the_database() -> None:
    """The committed row holds a token; on SQLite the key's bytes appear nowhere in the file or its WAL."""
    key, name = fresh_key(), f"canary-{secrets.token_hex(8)}"
    Upstream.objects.create(name=name, base_url="http://127.0.0.1:9/v1", api_key=key)
    raw = stored(name)
    assert raw.startswith(PREFIX) and key not in raw
    assert Upstream.objects.get(name=name).api_key == key
    if connection.vendor != "sqlite":
        return  # another engine's files are not ours to read: the column check above stands for it
    content = database_file_bytes()
    assert name.encode() in content  # the grep does see committed rows...
    assert key.encode() not in content  # ...and the key is not among them


@pytest.mark.django_db(transaction=True)
def test_key_entered_in_the_admin_is_stored_encrypted(admin_client: Client) -> None:
    key = fresh_key()
    response = admin_client.post("/admin/upstreams/upstream/add/", {**UPSTREAM_FORM, "api_key": key})
    assert response.status_code == 302
    assert stored("ds").startswith(PREFIX) and Upstream.objects.get(name="ds").api_key == key
    if connection.vendor == "sqlite":
        assert key.encode() not in database_file_bytes()


def test_no_admin_page_shows_the_key_or_its_token(admin_client: Client, db: None) -> None:
    """Upstream list, add, change and history, and the request log pages: neither the key nor its token."""
    key = f"plain-{secrets.token_hex(12)}"  # not sk- shaped: found only because the audit row knows its upstream
    admin_client.post("/admin/upstreams/upstream/add/", {**UPSTREAM_FORM, "api_key": key})
    upstream = Upstream.objects.get(name="ds")
    admin_client.post(f"/admin/upstreams/upstream/{upstream.pk}/change/", {**UPSTREAM_FORM, "priority": "2"})
    RequestLog.objects.record_many([dict(
        request_id="req_leak", endpoint="chat", outcome="upstream_error", upstream=upstream, upstream_name="ds",
        status=401, error_type="invalid_api_key", error_message=f"Incorrect API key provided: {key}",
    )])
    row = RequestLog.objects.get(request_id="req_leak")
    assert row.error_message == "Incorrect API key provided: [redacted]"
    invalid_add = admin_client.post("/admin/upstreams/upstream/add/", {**UPSTREAM_FORM, "name": "", "api_key": key})
    assert invalid_add.status_code == 200  # the form comes back with its errors, without the key typed in
    pages = [invalid_add]
    paths = ["/admin/upstreams/upstream/", "/admin/upstreams/upstream/add/",
             f"/admin/upstreams/upstream/{upstream.pk}/change/", f"/admin/upstreams/upstream/{upstream.pk}/history/",
             "/admin/logs/requestlog/", f"/admin/logs/requestlog/{row.pk}/change/", "/admin/"]
    for path in paths:
        page = admin_client.get(path, follow=True)  # the request log's entries lead to /logs/
        assert page.status_code == 200, path
        pages.append(page)
    # The staff log UI, where it exists; its detail route may take the pk or the request id.
    for path in ["/logs/", f"/logs/{row.pk}/", f"/logs/{row.request_id}/"]:
        if _routed(path):
            pages.append(admin_client.get(path))
    for page in pages:
        html = page.content.decode()
        assert key not in html and PREFIX not in html


@pytest.mark.django_db
def test_legacy_plain_row_still_reads() -> None:
    """A row from before encryption (no prefix) is used as it is until migrated."""
    Upstream.objects.create(name="legacy", base_url="http://127.0.0.1:9/v1")
    store_raw("legacy", "sk-legacy-plain-key")
    assert Upstream.objects.get(name="legacy").api_key == "sk-legacy-plain-key"


@pytest.mark.django_db
def test_migration_encrypts_plain_rows_and_its_reverse_restores_them() -> None:
    migration = importlib.import_module("upstreams.migrations.0002_encrypt_api_keys")
    Upstream.objects.create(name="legacy", base_url="http://127.0.0.1:9/v1")
    Upstream.objects.create(name="keyless", base_url="http://127.0.0.1:9/v1")
    store_raw("legacy", "sk-legacy-plain-key")
    # The functions use only the editor's connection; a real editor cannot open inside the test's transaction.
    editor = SimpleNamespace(connection=connection)
    migration.encrypt_keys(apps, editor)
    assert stored("legacy").startswith(PREFIX) and stored("keyless") == ""
    assert Upstream.objects.get(name="legacy").api_key == "sk-legacy-plain-key"
    migration.decrypt_keys(apps, editor)
    assert stored("legacy") == "sk-legacy-plain-key"


@pytest.mark.django_db
def test_dumpdata_writes_tokens_and_loaddata_reads_them_back() -> None:
    """Backups made with dumpdata hold no plain key, and restore to the same key."""
    key = fresh_key()
    Upstream.objects.create(name="dumped", base_url="http://127.0.0.1:9/v1", api_key=key)
    dumped = serializers.serialize("json", Upstream.objects.all())
    assert key not in dumped and PREFIX in dumped
    [restored] = serializers.deserialize("json", dumped)
    assert restored.object.api_key == key


@pytest.mark.django_db
def test_rotatekeys_reencrypts_so_the_old_key_can_be_dropped() -> None:
    key = fresh_key()
    with override_settings(GATEWAY_ENCRYPTION_KEYS=[OLD]):
        Upstream.objects.create(name="rotated", base_url="http://127.0.0.1:9/v1", api_key=key)
        Upstream.objects.create(name="keyless", base_url="http://127.0.0.1:9/v1")
    before = stored("rotated")
    with override_settings(GATEWAY_ENCRYPTION_KEYS=[NEW]), pytest.raises(DecryptionError):
        Upstream.objects.get(name="rotated")  # dropping the old key before rotating loses the row
    out = io.StringIO()
    with override_settings(GATEWAY_ENCRYPTION_KEYS=[NEW, OLD]):
        call_command("rotatekeys", stdout=out)
    assert "Re-encrypted 1 upstream key(s)" in out.getvalue()
    after = stored("rotated")
    assert after != before and Fernet(NEW.encode()).decrypt(after[len(PREFIX):].encode()).decode() == key
    with override_settings(GATEWAY_ENCRYPTION_KEYS=[NEW]):
        assert Upstream.objects.get(name="rotated").api_key == key
    assert stored("keyless") == ""


@pytest.mark.django_db
def test_rotatekeys_encrypts_legacy_plain_rows() -> None:
    Upstream.objects.create(name="legacy", base_url="http://127.0.0.1:9/v1")
    store_raw("legacy", "sk-legacy-plain-key")
    call_command("rotatekeys", stdout=io.StringIO())
    assert stored("legacy").startswith(PREFIX)
    assert Upstream.objects.get(name="legacy").api_key == "sk-legacy-plain-key"


@pytest.mark.django_db
def test_rotatekeys_without_the_old_key_fails_and_changes_nothing() -> None:
    with override_settings(GATEWAY_ENCRYPTION_KEYS=[OLD]):
        Upstream.objects.create(name="a", base_url="http://127.0.0.1:9/v1", api_key=fresh_key())
        Upstream.objects.create(name="b", base_url="http://127.0.0.1:9/v1", api_key=fresh_key())
    before = [stored("a"), stored("b")]
    with override_settings(GATEWAY_ENCRYPTION_KEYS=[NEW]), pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotatekeys", stdout=io.StringIO())
    assert [stored("a"), stored("b")] == before


def load_settings(monkeypatch: pytest.MonkeyPatch, encryption_key: str) -> dict[str, object]:
    """Evaluate gatewaysite/settings.py afresh, as a starting process would."""
    monkeypatch.setenv("GATEWAY_ENCRYPTION_KEY", encryption_key)
    return runpy.run_path(str(ROOT / "gatewaysite" / "settings.py"))


def test_malformed_encryption_key_stops_the_gateway_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImproperlyConfigured, match="GATEWAY_ENCRYPTION_KEY: key #2") as caught:
        load_settings(monkeypatch, f"{NEW},wrong-key-material")
    assert "wrong-key-material" not in str(caught.value)


def test_encryption_keys_come_from_the_environment_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = load_settings(monkeypatch, f"{NEW},{OLD}")["GATEWAY_ENCRYPTION_KEYS"]
    assert isinstance(keys, list) and keys[:2] == [NEW, OLD] and len(keys) == 3
