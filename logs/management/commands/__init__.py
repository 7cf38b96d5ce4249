"""The request log's commands.

    prunelogs  delete rows (and recordings) older than GATEWAY_LOG_RETENTION_DAYS, stored responses too
"""
