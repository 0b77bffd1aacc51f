"""``python -m radcommons``: the command line, as the ``radcommons`` script."""

from radcommons.cli import main

if __name__ == "__main__":
    main()
