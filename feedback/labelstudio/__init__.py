"""Label Studio: the ranking project's labelling config, ranking tasks built from recorded events, and
annotations parsed and validated (the server does not check results against the config)."""
