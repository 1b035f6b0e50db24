"""The optimisation step and what it is made of: the latent and Adam, cutouts and their augments, number formats,
the captured CUDA step, the guidance targets, and the cost model that times it."""
