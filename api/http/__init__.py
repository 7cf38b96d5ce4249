"""The HTTP surface of the API: how a request becomes an answer, and when its audit row is settled.

    app        the ASGI app serving /v1/ past Django's handler: dispatch, send every answer, close it
    endpoint   ``api_view``: request id, key, rate limit, JSON body, errors; one refusal or one answer each
    auth       who sent a request: its client key, and the throttle on addresses that guess keys
    limits     each key's rate limit, a fixed window in the shared cache
    answers    what a request ends with: an Answer, whose last release settles the row (the one place)
    errors     an error as an HTTP answer (the one place one is made)
    paths      which paths the API answers: /v1/..., the same without /v1, a JSON 404 for the rest
    lists      OpenAI's list objects and their pagination
    refusals   the rows of API requests that daphne refused before the app saw them
"""
