"""``python -m correlator`` runs the ``furui`` command line."""

from correlator.cli import main

main()
