"""Furui: threat analytics beside Zeek and Suricata."""

__version__ = "0.1.0"
