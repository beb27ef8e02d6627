"""Data that ships with feedback: the default constitution."""
