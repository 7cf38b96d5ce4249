"""Background responses (``background: true``): answered by a task of the process that took them, watched from any.

    run    a response's run: queued, answered through the pipeline, stored, ended (its row with it)
    inbox  this process's channel: watchers and cancels from other processes, and the heartbeat
    watch  ``GET /v1/responses/{id}?stream=true``: the events from the run, from its process, or from the row
    rows   a background response's row, read for its client; one whose process died is marked failed
"""
