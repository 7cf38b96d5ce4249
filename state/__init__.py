"""What the gateway keeps between requests (a Django app): stored responses, their items, conversations.

    models  StoredResponse (with its items, chains read in one recursive query), Conversation and their items
    apps    the app's config
"""
