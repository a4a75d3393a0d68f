from switchyard.audit.export.app import main

main()
