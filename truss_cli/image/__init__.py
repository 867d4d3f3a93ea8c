"""Docker images of a model directory: planning, the build context, the build, running.

`plan` decides what goes into an image (and checks the model first); `context` writes the
plan out as a build context; `engine` finds the Docker engine; `build` streams a build;
`container` runs one, with `limits` from config.yaml's resources; `labels` names what this
tool marks its images with. None of them prints: the CLI (`truss_cli.cli.image_cmd`) shows
progress from the events they report.
"""
