"""The OpenAI-compatible API's paths (served by api/http/app.py, past Django's handler) and the operator probes.

Each API view carries its endpoint name (``api_view``): the audit rows, and the shutdown's
refusals, take it from here, so this list is the one place the API's paths are written.
"""
from django.urls import path

from api.endpoints import conversations, health, models, responses, stored

urlpatterns = [
    path("v1/responses", responses.responses, name="responses"),
    path("v1/responses/compact", responses.compact, name="responses-compact"),
    path("v1/responses/<str:response_id>", stored.response_detail, name="response"),
    path("v1/responses/<str:response_id>/input_items", stored.input_items, name="response-input-items"),
    path("v1/responses/<str:response_id>/cancel", stored.cancel, name="response-cancel"),
    path("v1/chat/completions", responses.chat_completions, name="chat-completions"),
    path("v1/conversations", conversations.conversations, name="conversations"),
    path("v1/conversations/<str:conversation_id>", conversations.conversation, name="conversation"),
    path("v1/conversations/<str:conversation_id>/items", conversations.items, name="conversation-items"),
    path("v1/conversations/<str:conversation_id>/items/<str:item_id>", conversations.item, name="conversation-item"),
    path("v1/models", models.models, name="models"),
    path("v1/codex/models", models.codex_models, name="codex-models"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
]
