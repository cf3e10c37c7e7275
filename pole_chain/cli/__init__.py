"""The `pole` command line: subcommands parse arguments and call the layers below."""
