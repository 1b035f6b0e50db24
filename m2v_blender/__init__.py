"""m2v Blender add-on: song -> timeline markers -> rendered image strips in the VSE.

Runs inside Blender and never imports torch: heavy work happens in the engine
subprocess (``python -m engine``) in a separately managed environment.
The user interface arrives with the add-on issue; this module registers nothing yet.
"""


def register() -> None:
    """Register the add-on's classes with Blender."""


def unregister() -> None:
    """Unregister the add-on's classes."""
