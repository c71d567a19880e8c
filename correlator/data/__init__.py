"""Packaged defaults and weights (TOML), read through importlib.resources."""
