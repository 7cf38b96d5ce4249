"""URLs of the request log UI, mounted at /logs/ (the live tail's socket is routed in gatewaysite/asgi.py)."""
from django.urls import path

from logs.pages import views

app_name = "logs"
urlpatterns = [
    path("", views.log_list, name="list"),
    path("export.csv", views.log_csv, name="csv"),
    path("stats/", views.log_stats, name="stats"),
    path("summary/", views.log_summary, name="summary"),
    path("sessions/<str:session_id>/", views.log_session, name="session"),
    path("keys/<str:name>/", views.log_key, name="key"),
    # Spending: every key and team beside its budget, the CSV of it, a key's page (the same as keys/<name>/), a team's.
    path("usage/", views.log_usage, name="usage"),
    path("usage.csv", views.log_usage_csv, name="usage_csv"),
    path("usage/keys/<str:name>/", views.log_key, name="usage_key"),
    path("usage/teams/<str:name>/", views.log_team, name="usage_team"),
    # Client-chosen request ids may hold slashes: <path:> keeps them whole.
    path("<path:request_id>/recording.json", views.log_recording, name="recording"),
    path("<path:request_id>/", views.log_detail, name="detail"),
]
