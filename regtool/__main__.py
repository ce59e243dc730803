from regtool.cli import main

main()
