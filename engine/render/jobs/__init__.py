"""Running a render: the job over a plan's images, locally or as latent chains on Ray."""
