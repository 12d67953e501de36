"""``python -m resnext_deploy``: the same CLI as the ``resnext-deploy`` script."""

from resnext_deploy.cli import main

if __name__ == "__main__":
    main()
