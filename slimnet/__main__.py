from slimnet.cli import main

main()
