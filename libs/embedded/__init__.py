"""nats-server (JetStream) and PostgreSQL from their PyPI wheels, run in a data directory.

`deployforge up` uses these so that one machine needs nothing but the Python
package. Each class can hand its argv to a supervisor (`command()`) or spawn
the server itself (`start()`, used by tests). A second run on the same data
directory reuses the recorded ports and finds the data where it left it.
"""

from libs.embedded.nats import EmbeddedNats, nats_server_binary
from libs.embedded.postgres import PG_SYSTEM_USER, EmbeddedPostgres, postgres_bin_dir
from libs.embedded.process import PORTS_FILE, free_port

__all__ = [
    "PG_SYSTEM_USER",
    "PORTS_FILE",
    "EmbeddedNats",
    "EmbeddedPostgres",
    "free_port",
    "nats_server_binary",
    "postgres_bin_dir",
]
