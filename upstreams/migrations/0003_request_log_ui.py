"""Request log UI: the upstream-connected time, captured bodies, indexes for the filters and per-key counts."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('upstreams', '0002_encrypt_api_keys'),
    ]

    operations = [
        migrations.AddField(
            model_name='requestlog',
            name='connected_ms',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='requestlog',
            name='request_body',
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name='requestlog',
            name='response_body',
            field=models.TextField(blank=True),
        ),
        migrations.AddIndex(
            model_name='requestlog',
            index=models.Index(fields=['upstream_name', '-started'], name='upstreams_r_upstrea_32832c_idx'),
        ),
        migrations.AddIndex(
            model_name='requestlog',
            index=models.Index(fields=['client_key', '-started'], name='upstreams_r_client__451d3b_idx'),
        ),
    ]
