"""Typed shapes shared by every stage: events, findings and incidents."""
