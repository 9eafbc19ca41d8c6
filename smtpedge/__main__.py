from smtpedge.cli import main

main()
