"""The Responses API (``POST /v1/responses``) served through chat completions.

A Responses request is translated into a chat-completions body (``request``, ``items``), goes the guarded
chat path like any chat request, and its answer is translated back: a whole chat completion into a
``Response`` object (``response``), a chat stream into Responses stream events (``stream``, framed by
``sse``). Every function here is pure or a plain async generator over dicts: nothing touches the network.

Upstreams marked ``supports_responses`` are relayed natively (``native``: the same guarded path, the
request's rewrites carried back by ``native_body``, the answer read as chat by ``reverse``); the
translation serves the others (llama.cpp, TGI, many vLLM deployments), and a native one that answers 404.
Response ids are bound to the tenant that made them (``owners``), so no other tenant can read, cancel or
continue them.
"""
