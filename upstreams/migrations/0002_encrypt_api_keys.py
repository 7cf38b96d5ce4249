"""Encrypt upstream API keys at rest: the column becomes a Fernet token, existing plain keys are encrypted."""
from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

import upstreams.fields


def encrypt_keys(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Save every key again: the field reads a legacy plain value as is and writes a token."""
    Upstream = apps.get_model("upstreams", "Upstream")
    for upstream in Upstream.objects.using(schema_editor.connection.alias).exclude(api_key=""):
        upstream.save(update_fields=["api_key"])


def decrypt_keys(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Write the plain keys back, bypassing the field, which would encrypt them again."""
    Upstream = apps.get_model("upstreams", "Upstream")
    connection = schema_editor.connection
    table, column = (connection.ops.quote_name(name) for name in (Upstream._meta.db_table, "api_key"))
    plain = list(Upstream.objects.using(connection.alias).exclude(api_key="").values_list("pk", "api_key"))
    with connection.cursor() as cursor:
        for pk, key in plain:
            cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [key, pk])


class Migration(migrations.Migration):

    dependencies = [
        ("upstreams", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="upstream",
            name="api_key",
            field=upstreams.fields.EncryptedTextField(
                blank=True, help_text="Sent upstream as Authorization: Bearer; stored encrypted."
            ),
        ),
        migrations.RunPython(encrypt_keys, decrypt_keys),
    ]
