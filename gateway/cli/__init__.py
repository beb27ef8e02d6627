"""The ``hhh`` command line."""
