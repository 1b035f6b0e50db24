"""The plan: segments, rates, guidance parts, presets, the cost estimate, segment settings (torch-free)."""
