"""URL map: the OpenAI-compatible API and probes (api/), the admin, and the request log UI (logs/)."""
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("api.urls")),
    path("admin/", admin.site.urls),
    path("logs/", include("logs.urls")),
]
