"""The add-on's one error type: a problem shown to the user as a report, in plain words."""


class M2VError(Exception):
    """Raised for anything the user can fix (no song strip, engine not installed, a bad file)."""
