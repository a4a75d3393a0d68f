from switchyard.classifier.app import main

main()
