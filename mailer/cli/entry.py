"""The `mailer` console script: `mailer lint` starts without loading every command (issue 13).

An editor or a pre-commit hook runs `mailer lint` on every save or commit, so it must
start in well under half a second; the other commands load the database layer, the
scheduler and the web stack. Everything else goes through mailer.cli.app as before.
"""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "lint":
        from mailer.cli.lint_run import main_fast

        main_fast(sys.argv[1:])
        return
    from mailer.cli.app import main as full

    full()


if __name__ == "__main__":
    main()
