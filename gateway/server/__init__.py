"""The HTTP server around the routes: its limits, shutdown, request observation, readiness."""
