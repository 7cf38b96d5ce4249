"""The project's own development tools (not imported by the gateway).

    structure   the shape of the code, measured: complexity, sizes, folders, import cycles, package maps
    requestmix  a known mix of requests through `make run`'s gateway, the overview checked against its rows
"""
