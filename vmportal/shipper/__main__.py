"""``python -m vmportal.shipper``: the ``vmportal ship`` command on its own."""

from vmportal.shipper.cli import main

main()
