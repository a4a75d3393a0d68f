from switchyard.billing.app import main

main()
