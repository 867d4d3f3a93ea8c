"""Running a model directory as a local process: the Python to use, its cached virtual
environment, and the supervised replica process. The CLI's `truss run` wires these together."""
