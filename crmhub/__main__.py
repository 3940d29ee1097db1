"""`python -m crmhub` is the `crmhub` command."""

from crmhub.cli import main

main()
