"""Model bundles shipped with Furui (package data; see ``correlator.ml.bundle``)."""
