"""URL map: the OpenAI-compatible API and probes (api/), the admin, the request log UI (logs/), and ``/``."""
from django.contrib import admin
from django.urls import include, path

from logs.pages import home

urlpatterns = [
    path("", include("api.urls")),
    path("admin/", admin.site.urls),
    path("logs/", include("logs.urls")),
    # The bare host and the icon every browser asks for (logs/pages/home.py): not the API's JSON 404.
    path("", home.home, name="home"),
    path("favicon.ico", home.favicon, name="favicon"),
]
