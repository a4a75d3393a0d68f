from switchyard.audit.app import main

main()
