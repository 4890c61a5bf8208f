from playnext.serve.cli import main

main()
