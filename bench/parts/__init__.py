"""What one part of the gateway costs or gains, measured on its own.

    budget  the CPU a budget costs a request: its check and hold before routing, its settle at the end
    pools   time to first token per turn in a pool of members with prefix caches, with and without affinity
"""
