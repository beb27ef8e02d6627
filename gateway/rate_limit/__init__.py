"""Rate limits and concurrency slots, shared by every replica through Redis."""
