"""The song and its lyrics: loading, features, beats, segments, lyric files (torch-free)."""
