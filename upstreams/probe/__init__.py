"""What a live upstream server is and can do, asked over the network (*Test connection*, ``manage.py probe``).

    reach         can the gateway reach it with its key, and how fast (its models, or a 1-token request)
    discovery     the models it serves and, where the server reports it, each one's context window
    capabilities  the capability probe: what each compatibility switch should be for this server, checked live
    messages      the probe's checks of an Anthropic Messages server: streaming, tools, thinking
"""
