from circuitdb.cli import main

main()
