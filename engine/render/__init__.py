"""The render: the optimisation step (step/), where images come from (sources/), running the job (jobs/)."""
