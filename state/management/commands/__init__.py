"""The state app's commands.

    rotatekeys  re-encrypt upstream keys and stored items with the first of GATEWAY_ENCRYPTION_KEY's keys
"""
