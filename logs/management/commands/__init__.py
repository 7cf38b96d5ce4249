"""The request log's commands.

    prunelogs  delete rows (and recordings) older than GATEWAY_LOG_RETENTION_DAYS, stored responses too
    usage      each key's (and team's) requests, tokens and cost since a day, its budget used and left this period
"""
