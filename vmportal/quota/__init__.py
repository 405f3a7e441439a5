"""Quota accounting and the per-unit quota report."""
