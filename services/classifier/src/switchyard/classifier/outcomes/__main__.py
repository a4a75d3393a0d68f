from switchyard.classifier.outcomes.recorder import main

main()
