"""A stand-in for the ApsaraVideo Live recording API: the other side of the wire."""
