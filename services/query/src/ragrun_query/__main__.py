from ragrun_query.main import main

main()
