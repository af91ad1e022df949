from ragrun_embedder.main import main

main()
