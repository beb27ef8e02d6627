"""Preference datasets: rankings and users' feedback become pairwise reward-model data."""
