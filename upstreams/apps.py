from django.apps import AppConfig


class UpstreamsConfig(AppConfig):
    name = "upstreams"
    verbose_name = "Upstreams and client keys"

    def ready(self) -> None:
        from upstreams.routing import connect_signals

        connect_signals()
