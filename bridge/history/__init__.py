"""A request's history: the items it stands for once stored state is taken in, and its compaction.

    items       stored item forms, item_reference resolution, the state fields (`store`, `previous_response_id`)
    compaction  remote compaction for upstreams that cannot: the conversation as text, chunked, summarized
"""
