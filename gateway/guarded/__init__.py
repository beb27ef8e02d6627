"""The guarded path: a request's policy, its input guards, the relay, its output guards, its report."""
