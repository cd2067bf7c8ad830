"""Run the pesdata CLI from a checkout: ``python cli.py --help``."""
from pesdata.cli import main

main()
