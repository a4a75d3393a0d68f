from switchyard.classifier.blas import one_blas_thread

one_blas_thread()  # before numpy loads

from switchyard.classifier.app import main  # noqa: E402

main()
