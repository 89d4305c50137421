"""`python -m ocireg.cli`: the `ocireg` command."""

from ocireg.cli.command import main

main()
