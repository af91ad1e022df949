from ragrun_writer.main import main

main()
