"""The render: the loop, image sources, the optimisation step, cutouts, guidance, footage, motion."""
