from switchyard.executor.app import main

main()
