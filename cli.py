"""Run the pesdata CLI from a checkout: ``python cli.py --help``."""
from pesdata.__main__ import main

main()
