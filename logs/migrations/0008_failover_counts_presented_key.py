"""A failover is a move to another upstream: rows whose only try failed no longer count as failed over.

Before, ``failed_over`` named every failed try, the row's own upstream included, so a request
whose one upstream failed was listed as a failover and counted twice for that upstream.
"""
from django.db import migrations, models


def _moved_away(attempts, upstream_name):
    names = [str(a.get("upstream")) for a in attempts or []
             if isinstance(a, dict) and a.get("upstream") and a.get("upstream") != upstream_name]
    return "".join(f",{name}" for name in names) + "," if names else ""


def recount_failovers(apps, schema_editor):
    RequestLog = apps.get_model("logs", "RequestLog")
    rows = RequestLog.objects.exclude(failed_over="").only("pk", "attempts", "upstream_name", "failed_over")
    changed = []
    for row in rows.iterator(chunk_size=2000):
        moved = _moved_away(row.attempts, row.upstream_name)
        if moved != row.failed_over:
            row.failed_over = moved
            changed.append(row)
        if len(changed) >= 2000:
            RequestLog.objects.bulk_update(changed, ["failed_over"])
            changed = []
    RequestLog.objects.bulk_update(changed, ["failed_over"])


class Migration(migrations.Migration):

    dependencies = [
        ('logs', '0007_request_kind_session_notes'),
    ]

    operations = [
        migrations.AddField(
            model_name='requestlog',
            name='presented_key',
            field=models.CharField(blank=True, max_length=12),
        ),
        migrations.RunPython(recount_failovers, migrations.RunPython.noop),
    ]
