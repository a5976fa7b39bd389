"""The `wheelwright` console script. The command drives a Buildbot master, so it needs the
`master` extra; a bare `pip install wheelwright-farm` (the worker-side tools) gets one line saying so."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from wheelwright.cli.main import main as cli_main
    except ModuleNotFoundError as exc:
        print(
            f"wheelwright: the command needs the farm's master side ({exc.name} is missing): "
            "pip install 'wheelwright-farm[master]'",
            file=sys.stderr,
        )
        return 2
    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
