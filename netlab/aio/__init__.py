"""trio building blocks shared by several programs."""
