"""What the API app streams: answers it must close however they end, since closing writes their audit row."""
from __future__ import annotations

from django.http import StreamingHttpResponse


class ClosingStream(StreamingHttpResponse):
    """A streamed answer; the API app (api/app.py) always awaits ``aclose()``, even when nothing was sent."""

    async def aclose(self) -> None:
        raise NotImplementedError
