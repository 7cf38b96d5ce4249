"""URL map: the OpenAI-compatible API, health probes, the admin and the request log UI."""
from django.contrib import admin
from django.urls import include, path

from bridge import views

urlpatterns = [
    path("v1/responses", views.responses, name="responses"),
    path("v1/chat/completions", views.chat_completions, name="chat-completions"),
    path("v1/models", views.models, name="models"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("logs/", include("upstreams.urls")),
]
