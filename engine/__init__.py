"""m2v engine: song analysis and music-video rendering, run outside Blender.

The engine never imports ``bpy``; the Blender add-on talks to it through a
subprocess (``python -m engine ...``) and the JSON files it writes.
"""

__version__ = "0.1.0"
