from regtool.console import main

main()
