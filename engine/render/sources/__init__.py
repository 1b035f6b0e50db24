"""Where a render's images come from: preview cards or the models (with footage and motion)."""
