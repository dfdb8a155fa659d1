"""Insight for supervisors in the agent inbox: customer pages and behaviour segments (issue 18)."""
