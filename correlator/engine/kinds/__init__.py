"""Rule kinds: one module per kind, registered in ``correlator/engine/registry.py``."""
