"""The relay: forwarding a request to its upstream and its answer back (one or n, streamed or whole).
It knows nothing of guards; the guarded path (``gateway.guarded``) uses it."""
