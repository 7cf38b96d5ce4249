"""The request log moved to its own app (logs): the model leaves this app's state; its table stays as it is."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('upstreams', '0003_request_log_ui'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='RequestLog')],
            database_operations=[],
        ),
    ]
