"""What a render leaves on disk: the manifest and cache, the image writer, resume points, video export."""
