"""The two ways the CLI fails: each becomes one ``pylampe: error: ...`` line."""


class CliError(Exception):
    """A runtime failure (bad model file, context too small, ...): exit status 1."""

    exit_code = 1


class UsageError(CliError):
    """The command line itself is wrong: exit status 2, like argparse."""

    exit_code = 2
