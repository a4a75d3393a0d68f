from switchyard.gateway.app import main

main()
