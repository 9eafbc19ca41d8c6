from policyd.cli import main

main()
