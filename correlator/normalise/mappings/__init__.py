"""Mapping tables (TOML) from Zeek and Suricata fields to ECS, read as package data."""
