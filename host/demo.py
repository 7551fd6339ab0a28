"""`make demo`: the main job end to end (being extended as the engine lands).

Until the engine exists this prints the paper-reproduction report of ``python -m hw.report``.
"""

import sys

from hw.report import main as report_main


def main(argv=None) -> int:
    return report_main([] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
