"""``python -m pesdata.cli``."""

from . import main

main()
