from personal_connectors.cli.main import main

main()
