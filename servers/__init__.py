"""The daemons: thin trio drivers over netlab's machines, one module or package per server."""
