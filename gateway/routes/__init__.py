"""HTTP handlers: each parses, calls a service, and maps the result. Nothing else."""
