"""Template filters of the request log's pages.

    logtags  milliseconds, compact numbers, percentages, the outcome and status badges, bodies shown pretty
"""
