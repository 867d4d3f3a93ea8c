"""Docker images of a model directory: the build context, the build, and running a container.

`context` decides what goes into an image and renders the build context; `engine` finds the
Docker engine; `build` streams a build; `container` runs one. None of them prints: the CLI
(`truss_cli.cli.image_cmd`) shows progress from the events they report.
"""
