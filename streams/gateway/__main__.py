"""`python -m streams.gateway`: run the gateway until Ctrl-C (until `cosmic gateway run` exists)."""

from streams.gateway import main

main()
