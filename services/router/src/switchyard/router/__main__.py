from switchyard.router.app import main

main()
