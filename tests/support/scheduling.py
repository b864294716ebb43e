"""How pytest-xdist shares the suite between its workers (``scripts/test.sh`` runs ``-n 2``).

The suite mostly waits (on stacks starting, on deadlines it must see pass, on failovers), so
two workers nearly halve its time on two cores. Work is handed out a test file at a time,
so a module's fixtures (a stack of its own, a seeded data set) are built once, with one
exception: the fault suite (``tests/fault``) is a single unit of work. Its modules kill
brokers and processes, freeze PostgreSQL and run three-node clusters; two of them at once
on two cores would be measuring the machine, not TrailPay.
"""

from __future__ import annotations

from xdist.scheduler import LoadFileScheduling

#: Every test under this folder runs on one worker, one module after the other.
SERIAL_FOLDER = "tests/fault/"


class FileOrSerialFolderScheduling(LoadFileScheduling):
    """``--dist loadfile``, except that the files under :data:`SERIAL_FOLDER` are one unit."""

    def _split_scope(self, nodeid: str) -> str:
        if nodeid.startswith(SERIAL_FOLDER):
            return SERIAL_FOLDER
        return super()._split_scope(nodeid)
