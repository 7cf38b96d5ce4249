"""The API's commands: the flight recorder's.

    replay         a recorded exchange run through today's gateway, diffed against what it sent then
    exportfixture  a recorded exchange as a test fixture (tests/fixtures/recordings/)
"""
