from tritriage.cli import main

main()
