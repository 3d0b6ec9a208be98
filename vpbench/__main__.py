from vpbench.cli import main

main()
