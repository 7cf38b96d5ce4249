"""The request log (a Django app): one audit row per API request, written without holding answers up, read by staff.

    models     RequestLog (one row per request) and Recording (a flight recording beside its row)
    audit      writing the rows: one request's Exchange, the batched writer, the journal, the live tail's sender
    recording  the flight recorder: an upstream's next exchanges, raw, and their fixture format
    pages      /logs/: the list, a request's page, the overview's charts, the CSV export, the live tail's socket
    admin      the RequestLog's entry in the admin, leading to /logs/ (one request log)
    apps       the app's config
    urls       /logs/'s paths
"""
