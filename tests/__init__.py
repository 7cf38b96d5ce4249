"""The suite. In-process code that opens the audit journal (gatewaysite.asgi) keeps it out of the checkout's."""
import os
import tempfile

os.environ.setdefault("GATEWAY_JOURNAL_DIR", tempfile.mkdtemp(prefix="cgw-journal-tests-"))
