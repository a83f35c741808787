"""``python -m freightwatch``: same as the ``freightwatch`` command."""

from freightwatch.cli import main

main()
