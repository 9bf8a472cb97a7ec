"""The client tools: thin trio drivers over netlab's machines, one module per client."""
