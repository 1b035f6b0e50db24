"""The command line: commands, flags and their checks, ``info``."""
