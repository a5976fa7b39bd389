"""auditwheel show, then repair, in one interpreter: run by repair_wheel.py in the sandbox, with
auditwheel alone of the tools' environment (it imports nothing of ours).

python -I auditwheel_run.py WHEEL OUT [SONAME ...]

The verdict (`auditwheel show --json`) goes to OUT/shown.json, the repaired wheel to OUT/wheel/,
and a failure's reason to the last line of the output, as auditwheel says it.
"""

import contextlib
import io
import sys

import auditwheel.main_repair
import auditwheel.wheeltools
from auditwheel.libc import Libc
from auditwheel.main import main
from auditwheel.wheeltools import WheelToolsError

# A linux_<arch> name says nothing of the libc, and auditwheel then reads it from the extensions'
# own dependencies: one that needs nothing of libc (pyenv's 3.10 builds such) has none to read,
# and auditwheel gives up. Every pool of ours is glibc's: that is the wheel's libc.
told = auditwheel.wheeltools.get_wheel_libc


def wheel_libc(filename):
    try:
        return told(filename)
    except WheelToolsError:
        return Libc.GLIBC


auditwheel.wheeltools.get_wheel_libc = wheel_libc
auditwheel.main_repair.get_wheel_libc = wheel_libc

wheel, out, *excludes = sys.argv[1:]
shown = io.StringIO()
sys.argv = ["auditwheel", "show", "--json", wheel]
with contextlib.redirect_stdout(shown):
    code = main()
if code:
    sys.exit(code)
with open(out + "/shown.json", "w") as f:
    f.write(shown.getvalue())
sys.argv = ["auditwheel", "repair", "--wheel-dir", out + "/wheel", wheel]
sys.argv += [arg for soname in excludes for arg in ("--exclude", soname)]
sys.exit(main())
