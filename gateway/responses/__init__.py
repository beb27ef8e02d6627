"""The Responses API (``POST /v1/responses``) served through chat completions.

A Responses request is translated into a chat-completions body (``request``, ``items``), goes the guarded
chat path like any chat request, and its answer is translated back: a whole chat completion into a
``Response`` object (``response``), a chat stream into Responses stream events (``stream``, framed by
``sse``). Every function here is pure or a plain async generator over dicts: nothing touches the network.

Upstreams that serve ``/v1/responses`` themselves may later be relayed natively; this package is then the
fallback for those that do not (llama.cpp, TGI, many vLLM deployments).
"""
