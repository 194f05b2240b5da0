from salesledger.cli import main

main()
