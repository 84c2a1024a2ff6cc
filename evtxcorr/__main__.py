"""`python -m evtxcorr` runs the command line."""

from evtxcorr.cli import main

main()
