"""The flight recorder: for an upstream's next N exchanges, the raw upstream bytes and what the client was sent.

    recorder  records an exchange as it goes (the upstream's reads as they came), saves it beside its row
    fixtures  a recording as a test fixture file, and back (``manage.py exportfixture``, ``replay --fixture``)
"""
