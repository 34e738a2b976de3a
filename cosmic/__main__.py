from cosmic.cli import main

main()
