"""``python -m pesdata.cli`` (the same as ``pesdata`` and ``python -m pesdata``)."""

from ..__main__ import main

main()
