"""Sans-I/O protocol machines and codecs shared by servers and clients."""
