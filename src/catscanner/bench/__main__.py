"""``python -m catscanner.bench`` = ``catscan bench`` (options: ``--help``)."""

from .harness import main

main()
