from truss_cli.cli.app import main

main()
